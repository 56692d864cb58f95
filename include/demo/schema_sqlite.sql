-- Demo schema (SQLite): the worklog store of seed plan 003 (Jira worklogs synced per company and
-- Jira instance, billing rates, Factorial leaves) with the tables they reference.
-- Primary keys only (INTEGER PRIMARY KEY is the rowid, so no automatic index either): finding the
-- secondary indexes is the advisor's job. Foreign keys create no index in SQLite.
-- Traps for the advisor: worklogs.status (95% 'approved'), worklogs.comment (LIKE '%…%'),
-- companies (5 rows; a full scan is already the best plan).
-- Statements end with ';' at the end of a line (the loader splits there).

CREATE TABLE companies (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL,
    name TEXT NOT NULL
);

CREATE TABLE teams (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    name TEXT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    team_id INTEGER REFERENCES teams (id),
    active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE billing_projects (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    project_key TEXT NOT NULL,
    name TEXT NOT NULL
);

CREATE TABLE worklogs (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    jira_instance TEXT NOT NULL,
    issue_key TEXT NOT NULL,
    issue_type TEXT NOT NULL,
    project_key TEXT NOT NULL,
    billing_project_id INTEGER REFERENCES billing_projects (id),
    author_email TEXT NOT NULL,
    started TEXT NOT NULL,
    time_spent_seconds INTEGER NOT NULL,
    status TEXT NOT NULL,
    comment TEXT NOT NULL,
    synced_at TEXT NOT NULL
);

CREATE TABLE billing_rates (
    id INTEGER PRIMARY KEY,
    billing_project_id INTEGER NOT NULL REFERENCES billing_projects (id),
    user_email TEXT NOT NULL,
    issue_type TEXT NOT NULL,
    hourly_rate REAL NOT NULL,
    currency TEXT NOT NULL
);

CREATE TABLE factorial_leaves (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    leave_type TEXT NOT NULL,
    status TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL
);
