"""The cluster queue: several gateways sharing one durable queue in PostgreSQL
(`spool.backend: postgresql`). `PgQueue` is the gateway's `Queue` over it; `ClusterAdmission`
decides when a job may run, with the per-mailbox limits held by the database."""
