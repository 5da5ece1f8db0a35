-- User names are unique within a tenant, not across tenants: an admin creating a user must not
-- learn (from a refusal) that another tenant has that name. Owned by `access::accounts`.
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_username_key;
ALTER TABLE users ADD CONSTRAINT users_tenant_username_key UNIQUE (tenant, username);
CREATE INDEX IF NOT EXISTS users_by_name ON users (username);
