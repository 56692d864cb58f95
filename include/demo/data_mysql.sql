-- Demo data (MariaDB): set-based and deterministic. Rows come from the SEQUENCE engine
-- (seq_1_to_N: measured a little faster than a recursive CTE here, and needs no recursion limit).
-- Every value is a function of the row number: h = (CRC32(seq * K + salt) * 2654435761 mod 2^32) DIV 16.
-- CRC32 is linear, so CRCs of texts that differ only in a suffix are related (two such columns showed
-- half of their value pairs missing); different multiples of seq, then a multiplicative step whose
-- low bits are dropped, give columns whose joint counts spread like independent random ones.
-- The same scale gives the same rows. ${name} is a row count filled in by dbopt.demo_data.
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
SELECT seq,
       CONCAT('persona-', seq),
       ELT(1 + h1 % 8, 'calm', 'warm', 'direct', 'playful', 'formal', 'curious', 'empathetic', 'concise'),
       ELT(1 + h1 DIV 8 % 5, 'flowing', 'brisk', 'measured', 'slow', 'rapid'),
       ELT(1 + h1 DIV 40 % 12, 'seek_advice', 'vent', 'learn', 'plan', 'reflect', 'decide', 'explore', 'practice',
           'celebrate', 'complain', 'ask_feedback', 'set_goal'),
       ELT(1 + h2 % 8, 'en', 'en', 'en', 'de', 'fr', 'es', 'ja', 'ko'),
       CONCAT('Persona ', seq, ' guides users through ', ELT(1 + h2 DIV 8 % 5, 'career', 'health', 'study', 'money', 'family'),
              ' questions, version ', 1 + h2 DIV 40 % 9),
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (h3 % 31536000) SECOND,
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (h3 % 31536000 + h2 DIV 360 % 2592000) SECOND
FROM (SELECT seq,
             (CRC32(seq * 40503 + 1) * 2654435761 % 4294967296) DIV 16 AS h1,
             (CRC32(seq * 69069 + 1) * 2654435761 % 4294967296) DIV 16 AS h2,
             (CRC32(seq * 1103515245 + 1) * 2654435761 % 4294967296) DIV 16 AS h3
      FROM seq_1_to_${personas}) AS s;

INSERT INTO user_preferences (pref_id, user_id, pref_key, pref_value, created_at)
SELECT seq,
       CONCAT('user', 1 + h1 % ${users}),
       ELT(1 + h2 % 8, 'theme', 'language', 'notifications', 'persona_id', 'pace', 'digest', 'timezone', 'font_size'),
       ELT(1 + h2 DIV 8 % 10, 'dark', 'light', 'en', 'de', 'on', 'off', 'daily', 'weekly', 'large', 'small'),
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (h3 % 31536000) SECOND
FROM (SELECT seq,
             (CRC32(seq * 40503 + 2) * 2654435761 % 4294967296) DIV 16 AS h1,
             (CRC32(seq * 69069 + 2) * 2654435761 % 4294967296) DIV 16 AS h2,
             (CRC32(seq * 1103515245 + 2) * 2654435761 % 4294967296) DIV 16 AS h3
      FROM seq_1_to_${user_preferences}) AS s;

INSERT INTO sessions (id, session_id, user_id, region_id, status, ip_address, user_agent, created_at, last_seen_at)
SELECT seq,
       CONCAT('sess', seq),
       CONCAT('user', 1 + h1 % ${users}),
       1 + h2 % 20,
       CASE WHEN h2 DIV 20 % 100 < 95 THEN 'active' WHEN h2 DIV 20 % 100 < 99 THEN 'expired' ELSE 'revoked' END,
       CONCAT('10.', h3 % 256, '.', h3 DIV 256 % 256, '.', h3 DIV 65536 % 256),
       ELT(1 + h2 DIV 2000 % 6, 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0',
           'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/17.5', 'Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0',
           'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148', 'Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile',
           'ion-mentoring-app/3.2 (okhttp)'),
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL ((seq - 1) * 31536000 DIV ${sessions}) SECOND,
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL ((seq - 1) * 31536000 DIV ${sessions} + h1 DIV ${users} % 7200) SECOND
FROM (SELECT seq,
             (CRC32(seq * 40503 + 3) * 2654435761 % 4294967296) DIV 16 AS h1,
             (CRC32(seq * 69069 + 3) * 2654435761 % 4294967296) DIV 16 AS h2,
             (CRC32(seq * 1103515245 + 3) * 2654435761 % 4294967296) DIV 16 AS h3
      FROM seq_1_to_${sessions}) AS s;

INSERT INTO analytics (event_id, user_id, session_id, event_type, event_date, page, duration_ms, properties)
SELECT seq,
       CONCAT('user', 1 + h1 % ${users}),
       CONCAT('sess', 1 + h2 % ${sessions}),
       ELT(1 + h3 % 16, 'page_view', 'page_view', 'page_view', 'page_view', 'page_view', 'click', 'click', 'click',
           'process', 'process', 'search', 'signup', 'purchase', 'error', 'share', 'logout'),
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL ((seq - 1) * 31536000 DIV ${analytics} + h3 DIV 16 % 600) SECOND,
       CONCAT('/app/', ELT(1 + h3 DIV 9600 % 8, 'home', 'chat', 'settings', 'profile', 'history', 'billing', 'help', 'explore')),
       h1 DIV ${users} % 30000,
       CONCAT('{"client": "', ELT(1 + h2 DIV ${sessions} % 3, 'web', 'ios', 'android'), '", "v": ', h3 DIV 76800 % 50, '}')
FROM (SELECT seq,
             (CRC32(seq * 40503 + 4) * 2654435761 % 4294967296) DIV 16 AS h1,
             (CRC32(seq * 69069 + 4) * 2654435761 % 4294967296) DIV 16 AS h2,
             (CRC32(seq * 1103515245 + 4) * 2654435761 % 4294967296) DIV 16 AS h3
      FROM seq_1_to_${analytics}) AS s;

INSERT INTO audit_log (id, timestamp, action, entity_type, entity_id, actor_id, ip_address, details)
SELECT seq,
       TIMESTAMP'2025-01-01 00:00:00' + INTERVAL ((seq - 1) * 31536000 DIV ${audit_log} + h1 % 60) SECOND,
       action,
       entity_type,
       entity_id,
       CONCAT('user', 1 + h3 % ${users}),
       CONCAT('10.', h3 DIV ${users} % 256, '.', h1 DIV 60 % 256, '.', h1 DIV 15360 % 256),
       CONCAT(action, ' ', entity_type, ' #', entity_id, ' by user', 1 + h3 % ${users}, ': ',
              ELT(1 + h1 DIV 3932160 % 8, 'ok', 'ok', 'ok', 'ok', 'ok', 'timeout', 'denied', 'partial'))
FROM (SELECT seq, h1, h3,
             ELT(1 + h2 % 10, 'create', 'update', 'delete', 'login', 'logout', 'export', 'import', 'grant', 'revoke', 'read') AS action,
             ELT(1 + h2 DIV 10 % 8, 'user', 'persona', 'session', 'preference', 'report', 'invoice', 'project', 'document') AS entity_type,
             1 + h2 DIV 80 % ${entities} AS entity_id
      FROM (SELECT seq,
                   (CRC32(seq * 40503 + 5) * 2654435761 % 4294967296) DIV 16 AS h1,
                   (CRC32(seq * 69069 + 5) * 2654435761 % 4294967296) DIV 16 AS h2,
                   (CRC32(seq * 1103515245 + 5) * 2654435761 % 4294967296) DIV 16 AS h3
            FROM seq_1_to_${audit_log}) AS hashed) AS s;

ANALYZE TABLE regions, personas, user_preferences, sessions, analytics, audit_log;
