-- ductape.calls partitioned by day, and what the retention task may drop
-- (docs/reference.md "Retention").  The worker's behaviour over time is in
-- test/t/018_retention.pl.

-- A table partitioned by range on at, with the primary key (id, at), the
-- readers' indexes, row level security and no default partition.
SELECT c.relkind, pg_get_partkeydef(c.oid) AS partition_key, c.relrowsecurity AS rls
  FROM pg_class c WHERE c.oid = 'ductape.calls'::regclass;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'ductape.calls'::regclass ORDER BY conname;
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid = 'ductape.calls'::regclass ORDER BY 1::text;
SELECT polname, polcmd, pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'ductape.calls'::regclass;
SELECT count(*) AS default_partitions FROM pg_partitioned_table WHERE partrelid = 'ductape.calls'::regclass
   AND partdefid <> 0;

-- The worker makes today's partition and the next three days' (UTC) at its
-- start; each holds one day.
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT count(*) FROM pg_inherits WHERE inhparent = 'ductape.calls'::regclass) >= 4;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT to_char(d, 'YYYYMMDD') AS today FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) s \gset
SELECT count(*) AS days_made
  FROM generate_series(0, 3) k
 WHERE to_regclass(format('ductape.calls_%s', to_char((now() AT TIME ZONE 'UTC')::date + k, 'YYYYMMDD'))) IS NOT NULL;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SELECT replace(replace(pg_get_expr(c.relpartbound, c.oid), to_char(now()::date, 'YYYY-MM-DD'), 'TODAY'),
               to_char(now()::date + 1, 'YYYY-MM-DD'), 'TOMORROW') AS bounds
  FROM pg_class c WHERE c.oid = format('ductape.calls_%s', :'today')::regclass;
RESET TimeZone;
RESET DateStyle;
-- Every partition: named by its day, no grants, row level security on
-- (with no policy: nobody but a superuser reads it even if granted), a
-- member of the extension (pg_dump leaves it out, DROP EXTENSION drops it),
-- with the parent's indexes.
SELECT count(*) AS partitions,
       count(*) FILTER (WHERE p.relname ~ '^calls_[0-9]{8}$') AS named_by_day,
       count(*) FILTER (WHERE NOT EXISTS (SELECT FROM aclexplode(coalesce(p.relacl, acldefault('r', p.relowner))) a
                                       WHERE a.grantee <> p.relowner)) AS without_grants,
       count(*) FILTER (WHERE p.relrowsecurity) AS with_row_security,
       count(*) FILTER (WHERE NOT EXISTS (SELECT FROM pg_policy po WHERE po.polrelid = p.oid)) AS without_policy,
       count(*) FILTER (WHERE EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = p.oid
                                        AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')) AS members,
       count(*) FILTER (WHERE (SELECT count(*) FROM pg_index x WHERE x.indrelid = p.oid) = 3) AS with_3_indexes
  FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid WHERE i.inhparent = 'ductape.calls'::regclass;

-- Users read through ductape.calls only: a usage role and an admin role
-- are refused a partition (42501) but read the parent, which the worker's
-- insert reaches (a record of today is in today's partition).
CREATE ROLE dt_ret_app;
CREATE ROLE dt_ret_admin;
SELECT ductape.grant_usage('dt_ret_app'), ductape.grant_admin('dt_ret_admin');
SELECT ductape.app_define(jsonb_build_object(
  'tag', 'ret', 'envs', jsonb_build_array(jsonb_build_object('slug', 'dev', 'base_url', api())),
  'actions', jsonb_build_array(jsonb_build_object('tag', 'ok', 'method', 'GET', 'resource', '/echo/ret'))));
SET ROLE dt_ret_app;
SELECT ductape.run('ret', 'ok')->>'path' AS path;
SELECT wait_calls($$app = 'ret'$$) AS recorded;
SELECT replace(expect_error(format('SELECT * FROM ductape.calls_%s', :'today')), :'today', 'TODAY') AS usage_reads_partition;
SELECT replace(expect_error(format('SELECT count(*) FROM ONLY ductape.calls_%s', :'today')), :'today', 'TODAY') AS usage_reads_partition_only;
SELECT replace(expect_error(format('DELETE FROM ductape.calls_%s', :'today')), :'today', 'TODAY') AS usage_deletes_partition;
SELECT count(*) AS usage_sees_own FROM ductape.calls WHERE app = 'ret';
RESET ROLE;
SET ROLE dt_ret_admin;
SELECT replace(expect_error(format('SELECT * FROM ductape.calls_%s', :'today')), :'today', 'TODAY') AS admin_reads_partition;
SELECT count(*) >= 1 AS admin_sees_all FROM ductape.calls WHERE app = 'ret';
-- Nobody but a superuser can create a relation in schema ductape, so no
-- one can make a table of a future day's name for the worker to find.
SELECT expect_error('CREATE TABLE ductape.calls_20991231 (id bigint)') AS admin_creates_in_schema;
RESET ROLE;
SET ROLE dt_ret_app;
SELECT expect_error('CREATE TABLE ductape.calls_20991231 (id bigint)') AS usage_creates_in_schema;
SELECT replace(expect_error(format('DROP TABLE ductape.calls_%s', :'today')), :'today', 'TODAY') AS usage_drops;
RESET ROLE;
SELECT has_schema_privilege('dt_ret_admin', 'ductape', 'CREATE') AS admin_schema_create,
       has_schema_privilege('dt_ret_app', 'ductape', 'CREATE') AS usage_schema_create,
       has_schema_privilege('public', 'ductape', 'CREATE') AS public_schema_create;
SELECT tableoid::regclass::text = 'ductape.calls_' || :'today' AS stored_in_todays_partition
  FROM ductape.calls WHERE app = 'ret' LIMIT 1;

-- A row outside every partition is refused (there is no default partition:
-- only the worker writes, making the day first).
SELECT expect_error($$INSERT INTO ductape.calls (id, at, method, url, attempts, duration_ms)
                      VALUES (1, '1999-01-01', 'GET', 'x', 1, 1)$$) AS no_partition;

-- Finished workflow runs have an index for the retention task.
SELECT pg_get_indexdef('ductape.workflow_runs_finished_idx'::regclass);

DROP OWNED BY dt_ret_app, dt_ret_admin;
DROP ROLE dt_ret_app, dt_ret_admin;
SELECT ductape.app_drop('ret');
