-- Demo schema (MariaDB 10.11 / MySQL 8): the same tables as schema_postgres.sql.
-- Primary keys only: finding the secondary indexes is the advisor's job. No foreign keys, because
-- InnoDB would create an index for each one.
-- Traps for the advisor: sessions.status (95% 'active'), audit_log.details (LIKE '%…%'),
-- regions (20 rows; a full scan is already the best plan).
-- Statements end with ';' at the end of a line (the loader splits there).

CREATE TABLE regions (
    region_id SMALLINT NOT NULL PRIMARY KEY,
    code VARCHAR(16) NOT NULL,
    name VARCHAR(64) NOT NULL,
    timezone VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE personas (
    persona_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    tone VARCHAR(20) NOT NULL,
    pace VARCHAR(20) NOT NULL,
    intent VARCHAR(40) NOT NULL,
    language VARCHAR(8) NOT NULL,
    description TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE user_preferences (
    pref_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id VARCHAR(32) NOT NULL,
    pref_key VARCHAR(64) NOT NULL,
    pref_value VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE sessions (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    session_id VARCHAR(64) NOT NULL,
    user_id VARCHAR(32) NOT NULL,
    region_id SMALLINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    ip_address VARCHAR(45) NOT NULL,
    user_agent VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    last_seen_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE analytics (
    event_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id VARCHAR(32) NOT NULL,
    session_id VARCHAR(64) NOT NULL,
    event_type VARCHAR(32) NOT NULL,
    event_date DATETIME NOT NULL,
    page VARCHAR(255) NOT NULL,
    duration_ms INT NOT NULL,
    properties TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE audit_log (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    timestamp DATETIME NOT NULL,
    action VARCHAR(32) NOT NULL,
    entity_type VARCHAR(32) NOT NULL,
    entity_id BIGINT NOT NULL,
    actor_id VARCHAR(32) NOT NULL,
    ip_address VARCHAR(45),
    details TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
