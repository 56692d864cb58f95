-- Demo data (SQLite): set-based and deterministic. A recursive CTE numbers the rows; two 32-bit
-- hashes per row number (Mueller's integer mix; SQLite has no XOR operator, so
-- x ^ y is written (x | y) - (x & y)) live in a temporary table that every INSERT reads, so the
-- same scale gives the same rows. ${name} is a row count filled in by dbopt.demo_data.
-- Time columns span 2025-01-01 .. 2025-12-31 (1735689600 = 2025-01-01 00:00:00 UTC).
-- Statements end with ';' at the end of a line (the loader splits there).

CREATE TEMP TABLE demo_hash (n INTEGER PRIMARY KEY, a INTEGER NOT NULL, b INTEGER NOT NULL);

INSERT INTO temp.demo_hash (n, a, b)
WITH RECURSIVE seq (n, x, y) AS (
    SELECT 1, 1, 2654435770
    UNION ALL
    SELECT n + 1, n + 1, (n + 2654435770) % 4294967296 FROM seq WHERE n < ${hash_rows}
)
SELECT n, (((x >> 16) | x) - ((x >> 16) & x)) * 73244475 % 4294967296,
          (((y >> 16) | y) - ((y >> 16) & y)) * 73244475 % 4294967296
FROM seq;

UPDATE temp.demo_hash SET a = (((a >> 16) | a) - ((a >> 16) & a)) * 73244475 % 4294967296,
                          b = (((b >> 16) | b) - ((b >> 16) & b)) * 73244475 % 4294967296;

UPDATE temp.demo_hash SET a = ((a >> 16) | a) - ((a >> 16) & a),
                          b = ((b >> 16) | b) - ((b >> 16) & b);

INSERT INTO companies (id, slug, name) VALUES
    (1, 'acme', 'Acme Consulting'), (2, 'globex', 'Globex Corporation'), (3, 'initech', 'Initech'),
    (4, 'umbrella', 'Umbrella Services'), (5, 'hooli', 'Hooli');

INSERT INTO teams (id, company_id, name)
SELECT n, 1 + (n - 1) % ${companies}, 'Team ' || n FROM temp.demo_hash WHERE n <= ${teams};

INSERT INTO users (id, email, display_name, team_id, active)
SELECT n, 'user' || n || '@example.com', 'User ' || n, 1 + a % ${teams}, CASE WHEN b % 20 = 0 THEN 0 ELSE 1 END
FROM temp.demo_hash WHERE n <= ${users};

INSERT INTO billing_projects (id, company_id, project_key, name)
SELECT n, 1 + (n - 1) % ${companies}, 'PRJ' || n, 'Project ' || n FROM temp.demo_hash WHERE n <= ${billing_projects};

INSERT INTO worklogs (id, company_id, jira_instance, issue_key, issue_type, project_key, billing_project_id,
                      author_email, started, time_spent_seconds, status, comment, synced_at)
SELECT n,
       1 + a % ${companies},
       CASE a / 8 % 3 WHEN 0 THEN 'Company Main' WHEN 1 THEN 'Company Legacy' ELSE 'Company Support' END,
       'PRJ' || (1 + b % ${billing_projects}) || '-' || (1 + a / 1048576 % 500),
       CASE a / 32 % 4 WHEN 0 THEN 'Story' WHEN 1 THEN 'Bug' WHEN 2 THEN 'Task' ELSE 'Support' END,
       'PRJ' || (1 + b % ${billing_projects}),
       1 + b % ${billing_projects},
       'user' || (1 + a / 128 % ${users}) || '@example.com',
       datetime(1735689600 + started_s, 'unixepoch'),
       900 * (1 + b / 524288 % 32),
       CASE WHEN b / 4096 % 100 < 95 THEN 'approved' WHEN b / 4096 % 100 < 99 THEN 'pending' ELSE 'rejected' END,
       CASE a / 65536 % 8 WHEN 0 THEN 'code review' WHEN 1 THEN 'sprint meeting' WHEN 2 THEN 'deployment'
           WHEN 3 THEN 'bugfix' WHEN 4 THEN 'timeout investigation' WHEN 5 THEN 'planning'
           WHEN 6 THEN 'documentation' ELSE 'support call' END || ' on ' || 'PRJ' || (1 + b % ${billing_projects}),
       datetime(1735689600 + started_s + 3600, 'unixepoch')
FROM (SELECT n, a, b, (n - 1) * 31536000 / ${worklogs} + b / 16777216 * 14 AS started_s
      FROM temp.demo_hash WHERE n <= ${worklogs});

-- One rate per (project, user, issue type): a full grid, so every lookup of the workload finds its row.
INSERT INTO billing_rates (id, billing_project_id, user_email, issue_type, hourly_rate, currency)
SELECT n,
       1 + (n - 1) % ${billing_projects},
       'user' || (1 + (n - 1) / ${billing_projects} % ${users}) || '@example.com',
       CASE (n - 1) / (${billing_projects} * ${users}) % 4 WHEN 0 THEN 'Story' WHEN 1 THEN 'Bug' WHEN 2 THEN 'Task'
           ELSE 'Support' END,
       40 + a % 120,
       CASE WHEN (n - 1) % ${billing_projects} % 3 = 0 THEN 'USD' ELSE 'EUR' END
FROM temp.demo_hash WHERE n <= ${billing_rates};

INSERT INTO factorial_leaves (id, user_id, leave_type, status, start_date, end_date)
SELECT n,
       1 + a % ${users},
       CASE a / 1024 % 4 WHEN 0 THEN 'vacation' WHEN 1 THEN 'sick' WHEN 2 THEN 'personal' ELSE 'parental' END,
       CASE WHEN a / 4096 % 100 < 70 THEN 'approved' WHEN a / 4096 % 100 < 85 THEN 'pending'
           WHEN a / 4096 % 100 < 95 THEN 'rejected' ELSE 'cancelled' END,
       date(1735689600 + b % 31536000, 'unixepoch'),
       date(1735689600 + b % 31536000 + 86400 * (b / 31536000 % 10), 'unixepoch')
FROM temp.demo_hash WHERE n <= ${factorial_leaves};

DROP TABLE temp.demo_hash;

ANALYZE;
