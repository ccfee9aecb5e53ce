# Secrets at rest: after setting a secret and using it in a call, its
# plaintext is found nowhere on disk (heap, WAL, every file under the data
# directory), in no ductape table, and not in a server log written at
# log_min_messages = debug5.  Also: a master key file outside the data
# directory, and what happens with the wrong key.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use File::Find;

my $api = api_url();
my $plain = 'sk_live_tapsecret_' . int(rand(1e9));

my $node = ductape_node('secrets', qq{
log_min_messages = debug5
log_statement = 'none'
});
like(slurp_file($node->logfile), qr/WARNING:  ductape created a master key in ".*ductape_master\.key"/,
	'the first start creates a master key in PGDATA, with a warning');
my $keyfile = $node->data_dir . '/ductape_master.key';
is((stat($keyfile))[2] & 07777, 0600, 'the key file is mode 0600');

$node->safe_psql('postgres', 'CREATE EXTENSION ductape');
# Set the secret the way README recommends: a psql variable, no statement log.
$node->safe_psql('postgres', "\\set v '$plain'\nSELECT ductape.secret_set('TAP_KEY', :'v')");
$node->safe_psql('postgres', qq{
SELECT ductape.app_define('{"tag": "tap", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "bearer", "token": "\$Secret{TAP_KEY}"},
  "actions": [{"tag": "me", "method": "GET", "resource": "/echo/me"},
              {"tag": "no", "method": "GET", "resource": "/status/403", "query": {"k": "\$Secret{TAP_KEY}"}}]}')});
is($node->safe_psql('postgres', "SELECT ductape.run('tap', 'me')->'headers'->>'authorization'"),
	"Bearer $plain", 'the call carried the secret');
$node->psql('postgres', "SELECT ductape.run('tap', 'no')");
$node->safe_psql('postgres', "SELECT ductape.run_response('tap', 'no')");
$node->poll_query_until('postgres', "SELECT count(*) = 3 FROM ductape.calls") or die;
$node->safe_psql('postgres', 'CHECKPOINT');

# Every ductape table, read as text.
my $tables = $node->safe_psql('postgres', q{
SELECT string_agg(format('SELECT %L, count(*) FROM %s t WHERE t::text LIKE %L',
                         c.oid::regclass, c.oid::regclass, '%%' || $$PLAIN$$ || '%%'), ' UNION ALL ')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'ductape' AND c.relkind IN ('r', 'v')});
$tables =~ s/PLAIN/$plain/g;
my $hits = $node->safe_psql('postgres', "SELECT coalesce(sum(count), 0) FROM ($tables) s(name, count)");
is($hits, '0', 'no ductape table or view holds the plaintext');

# Every file under the data directory: heap, indexes, WAL, everything.
$node->stop;
my @found;
my $files = 0;
find(sub {
	return unless -f $_;
	$files++;
	open(my $fh, '<:raw', $_) or return;
	local $/;
	my $data = <$fh>;
	push @found, $File::Find::name if index($data, $plain) >= 0;
}, $node->data_dir);
cmp_ok($files, '>', 100, "searched $files files under the data directory");
is_deeply(\@found, [], 'the plaintext is in no file under the data directory (heap or WAL)');
my $log = slurp_file($node->logfile);
cmp_ok(length($log), '>', 10000, 'the debug5 log was written');
is(index($log, $plain), -1, 'the plaintext is not in the server log at debug5');

# A key file outside PGDATA (base64, with a version prefix): secrets written
# under one key are unreadable under another.
my $outside = PostgreSQL::Test::Utils::tempdir() . '/master.key';
open(my $kf, '>', $outside) or die;
print $kf "# ductape keys\n3:" . join('', map { ('A'..'Z')[rand 26] } 1..43) . "=\n";
close($kf);
chmod 0600, $outside;
$node->append_conf('postgresql.conf', "ductape.master_key_file = '$outside'\n");
$node->start;
my ($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.secret_get('TAP_KEY')");
like($err, qr/ERROR:  master key version 1 is not in the key file/, 'a value written under another key is refused');
$node->safe_psql('postgres', "SELECT ductape.secret_set('TAP_KEY2', 'another_value_123')");
is($node->safe_psql('postgres', "SELECT key_version FROM ductape._secrets WHERE name = 'TAP_KEY2'"), '3',
	'new values use the key file\'s highest version');
is($node->safe_psql('postgres', "SELECT ductape.secret_get('TAP_KEY2')"), 'another_value_123', 'and decrypt');
chmod 0604, $outside;
($ret, $out, $err) = $node->psql('postgres', "SELECT ductape.rotate_master_key()");
like($err, qr/master key file ".*" cannot be used\nDETAIL:  The file is accessible to other users/,
	'a world-readable key file is refused');
$node->stop;
done_testing();
