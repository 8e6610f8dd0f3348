// The Postgres state store; see PostgresStateStore.swift.
