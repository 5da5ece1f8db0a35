-- User names are unique within a tenant, not across tenants: an admin creating a user must not
-- learn (from a refusal) that another tenant has that name. SQLite cannot change a table's
-- constraint in place: the table is rebuilt with the same rows and ids. Owned by
-- `access::accounts`.
CREATE TABLE users_by_tenant (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    username             TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL,
    tenant               TEXT NOT NULL,
    projects             TEXT NOT NULL DEFAULT '',
    extension            TEXT,
    disabled             INTEGER NOT NULL DEFAULT 0,
    created_at_ms        INTEGER NOT NULL,
    links_valid_after_ms INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, username)
);
INSERT INTO users_by_tenant (id, username, password_hash, role, tenant, projects, extension,
                             disabled, created_at_ms, links_valid_after_ms)
    SELECT id, username, password_hash, role, tenant, projects, extension, disabled,
           created_at_ms, links_valid_after_ms
    FROM users;
DROP TABLE users;
ALTER TABLE users_by_tenant RENAME TO users;
CREATE INDEX IF NOT EXISTS users_by_name ON users (username);
