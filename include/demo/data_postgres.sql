-- Demo data (PostgreSQL): set-based and deterministic. Every value is a function of the row number
-- g through hashint8extended(g, salt), the hash behind hash partitioning (stable across releases),
-- so the same scale gives the same rows. ${name} is a row count filled in by dbopt.demo_data.
-- Time columns span 2025-01-01 .. 2025-12-31; log-like tables grow with their id, as real logs do.
-- Statements end with ';' at the end of a line (the loader splits there).

INSERT INTO regions (region_id, code, name, timezone) VALUES
    (1, 'us-east', 'US East', 'America/New_York'), (2, 'us-west', 'US West', 'America/Los_Angeles'),
    (3, 'ca-central', 'Canada Central', 'America/Toronto'), (4, 'br-south', 'Brazil South', 'America/Sao_Paulo'),
    (5, 'eu-west', 'EU West', 'Europe/Dublin'), (6, 'eu-central', 'EU Central', 'Europe/Berlin'),
    (7, 'eu-north', 'EU North', 'Europe/Stockholm'), (8, 'uk-south', 'UK South', 'Europe/London'),
    (9, 'af-south', 'Africa South', 'Africa/Johannesburg'), (10, 'me-central', 'Middle East', 'Asia/Dubai'),
    (11, 'in-west', 'India West', 'Asia/Kolkata'), (12, 'in-south', 'India South', 'Asia/Kolkata'),
    (13, 'ap-southeast', 'Asia Pacific Southeast', 'Asia/Singapore'), (14, 'ap-northeast', 'Asia Pacific Northeast', 'Asia/Tokyo'),
    (15, 'ap-east', 'Asia Pacific East', 'Asia/Hong_Kong'), (16, 'au-east', 'Australia East', 'Australia/Sydney'),
    (17, 'au-southeast', 'Australia Southeast', 'Australia/Melbourne'), (18, 'jp-east', 'Japan East', 'Asia/Tokyo'),
    (19, 'kr-central', 'Korea Central', 'Asia/Seoul'), (20, 'sa-east', 'South America East', 'America/Santiago');

INSERT INTO personas (persona_id, name, tone, pace, intent, language, description, created_at, updated_at)
SELECT g,
       'persona-' || g,
       (ARRAY['calm', 'warm', 'direct', 'playful', 'formal', 'curious', 'empathetic', 'concise'])[1 + h1 % 8],
       (ARRAY['flowing', 'brisk', 'measured', 'slow', 'rapid'])[1 + h1 / 8 % 5],
       (ARRAY['seek_advice', 'vent', 'learn', 'plan', 'reflect', 'decide', 'explore', 'practice',
              'celebrate', 'complain', 'ask_feedback', 'set_goal'])[1 + h1 / 40 % 12],
       (ARRAY['en', 'en', 'en', 'de', 'fr', 'es', 'ja', 'ko'])[1 + h2 % 8],
       'Persona ' || g || ' guides users through ' || (ARRAY['career', 'health', 'study', 'money', 'family'])[1 + h2 / 8 % 5]
           || ' questions, version ' || (1 + h2 / 40 % 9),
       TIMESTAMP '2025-01-01' + make_interval(secs => h3 % 31536000),
       TIMESTAMP '2025-01-01' + make_interval(secs => h3 % 31536000 + h2 / 360 % 2592000)
FROM (SELECT g,
             hashint8extended(g, 1) & 2147483647 AS h1,
             hashint8extended(g, 2) & 2147483647 AS h2,
             hashint8extended(g, 3) & 2147483647 AS h3
      FROM generate_series(1::bigint, ${personas}) AS g) AS s;

INSERT INTO user_preferences (pref_id, user_id, pref_key, pref_value, created_at)
SELECT g,
       'user' || (1 + h1 % ${users}),
       (ARRAY['theme', 'language', 'notifications', 'persona_id', 'pace', 'digest', 'timezone', 'font_size'])[1 + h2 % 8],
       (ARRAY['dark', 'light', 'en', 'de', 'on', 'off', 'daily', 'weekly', 'large', 'small'])[1 + h2 / 8 % 10],
       TIMESTAMP '2025-01-01' + make_interval(secs => h3 % 31536000)
FROM (SELECT g,
             hashint8extended(g, 11) & 2147483647 AS h1,
             hashint8extended(g, 12) & 2147483647 AS h2,
             hashint8extended(g, 13) & 2147483647 AS h3
      FROM generate_series(1::bigint, ${user_preferences}) AS g) AS s;

INSERT INTO sessions (id, session_id, user_id, region_id, status, ip_address, user_agent, created_at, last_seen_at)
SELECT g,
       'sess' || g,
       'user' || (1 + h1 % ${users}),
       1 + h2 % 20,
       CASE WHEN h2 / 20 % 100 < 95 THEN 'active' WHEN h2 / 20 % 100 < 99 THEN 'expired' ELSE 'revoked' END,
       '10.' || h3 % 256 || '.' || h3 / 256 % 256 || '.' || h3 / 65536 % 256,
       (ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/17.5',
              'Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148',
              'Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile', 'ion-mentoring-app/3.2 (okhttp)'])[1 + h2 / 2000 % 6],
       TIMESTAMP '2025-01-01' + make_interval(secs => (g - 1) * 31536000 / ${sessions}),
       TIMESTAMP '2025-01-01' + make_interval(secs => (g - 1) * 31536000 / ${sessions} + h1 / ${users} % 7200)
FROM (SELECT g,
             hashint8extended(g, 21) & 2147483647 AS h1,
             hashint8extended(g, 22) & 2147483647 AS h2,
             hashint8extended(g, 23) & 2147483647 AS h3
      FROM generate_series(1::bigint, ${sessions}) AS g) AS s;

INSERT INTO analytics (event_id, user_id, session_id, event_type, event_date, page, duration_ms, properties)
SELECT g,
       'user' || (1 + h1 % ${users}),
       'sess' || (1 + h2 % ${sessions}),
       (ARRAY['page_view', 'page_view', 'page_view', 'page_view', 'page_view', 'click', 'click', 'click',
              'process', 'process', 'search', 'signup', 'purchase', 'error', 'share', 'logout'])[1 + h3 % 16],
       TIMESTAMP '2025-01-01' + make_interval(secs => (g - 1) * 31536000 / ${analytics} + h3 / 16 % 600),
       '/app/' || (ARRAY['home', 'chat', 'settings', 'profile', 'history', 'billing', 'help', 'explore'])[1 + h3 / 9600 % 8],
       h1 / ${users} % 30000,
       '{"client": "' || (ARRAY['web', 'ios', 'android'])[1 + h2 / ${sessions} % 3] || '", "v": ' || h3 / 76800 % 50 || '}'
FROM (SELECT g,
             hashint8extended(g, 31) & 2147483647 AS h1,
             hashint8extended(g, 32) & 2147483647 AS h2,
             hashint8extended(g, 33) & 2147483647 AS h3
      FROM generate_series(1::bigint, ${analytics}) AS g) AS s;

INSERT INTO audit_log (id, timestamp, action, entity_type, entity_id, actor_id, ip_address, details)
SELECT g,
       TIMESTAMP '2025-01-01' + make_interval(secs => (g - 1) * 31536000 / ${audit_log} + h1 % 60),
       action,
       entity_type,
       entity_id,
       'user' || (1 + h3 % ${users}),
       '10.' || h3 / ${users} % 256 || '.' || h1 / 60 % 256 || '.' || h1 / 15360 % 256,
       action || ' ' || entity_type || ' #' || entity_id || ' by user' || (1 + h3 % ${users}) || ': '
           || (ARRAY['ok', 'ok', 'ok', 'ok', 'ok', 'timeout', 'denied', 'partial'])[1 + h1 / 3932160 % 8]
FROM (SELECT g, h1, h3,
             (ARRAY['create', 'update', 'delete', 'login', 'logout', 'export', 'import', 'grant', 'revoke', 'read'])[1 + h2 % 10] AS action,
             (ARRAY['user', 'persona', 'session', 'preference', 'report', 'invoice', 'project', 'document'])[1 + h2 / 10 % 8] AS entity_type,
             1 + h2 / 80 % ${entities} AS entity_id
      FROM (SELECT g,
                   hashint8extended(g, 41) & 2147483647 AS h1,
                   hashint8extended(g, 42) & 2147483647 AS h2,
                   hashint8extended(g, 43) & 2147483647 AS h3
            FROM generate_series(1::bigint, ${audit_log}) AS g) AS hashed) AS s;

-- Rows were inserted with explicit ids: move the identity sequences past them for the app's INSERTs.
SELECT setval(pg_get_serial_sequence('personas', 'persona_id'), ${personas}),
       setval(pg_get_serial_sequence('user_preferences', 'pref_id'), ${user_preferences}),
       setval(pg_get_serial_sequence('sessions', 'id'), ${sessions}),
       setval(pg_get_serial_sequence('analytics', 'event_id'), ${analytics}),
       setval(pg_get_serial_sequence('audit_log', 'id'), ${audit_log});

ANALYZE regions, personas, user_preferences, sessions, analytics, audit_log;
