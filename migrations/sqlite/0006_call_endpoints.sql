-- The endpoints each tenant's users may place direct calls between (POST /api/calls). Set by
-- the operator (`ari-recorder tenant set NAME --call-endpoints ...`), never by a tenant's own
-- admins; a tenant with none places no calls. Owned by `access::calls`.
CREATE TABLE IF NOT EXISTS tenant_call_endpoints (
    tenant  TEXT NOT NULL,
    pattern TEXT NOT NULL,
    PRIMARY KEY (tenant, pattern)
);
