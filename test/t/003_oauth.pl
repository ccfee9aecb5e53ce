# OAuth2 single flight: two backends that need a token at the same moment
# cause exactly one token request (counted by the test server), and both
# get the token.  Token refreshes are done by the database's worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use DuctapeTest;
use IPC::Run;

my $api = api_url();

my $node = ductape_node('oauth');
$node->safe_psql('postgres', qq{
CREATE EXTENSION ductape;
SELECT ductape.http('POST', '$api/oauth/reset');
SELECT ductape.http('GET', '$api/reset');
SELECT ductape.secret_set('SF_SECRET', 's3cret/client:1');
SELECT ductape.app_define('{"tag": "sf", "envs": [{"slug": "dev", "base_url": "$api"}],
  "auth": {"type": "oauth2", "token_url": "$api/oauth/token?delay_ms=800",
           "client_id": "ductape-client", "client_secret": "\$Secret{SF_SECRET}"},
  "actions": [{"tag": "res", "method": "GET", "resource": "/oauth/resource"}]}');
});

sub count_of
{
	my $key = shift;
	return $node->safe_psql('postgres',
		"SELECT ductape.http('GET', '$api/count/$key')->'body'->>'count'");
}

# Two sessions call at the same moment; returns what each printed.
sub two_sessions_at_once
{
	my @h;
	my @out = ('', '');
	for my $i (0, 1)
	{
		push @h, IPC::Run::start(
			[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
			  "SELECT ductape.run('sf', 'res')->>'path'" ],
			'>', \$out[$i], '2>', \$out[$i]);
	}
	$_->finish for @h;
	return @out;
}

# The token endpoint takes 800 ms to answer.
my @out = two_sessions_at_once();
is($out[0], "/oauth/resource\n", 'the first session got through');
is($out[1], "/oauth/resource\n", 'the second session got through');
is(count_of('oauth-token'), '1', 'two concurrent sessions caused exactly one token request');
is(count_of('oauth-resource'), '2', 'both reached the protected resource');

# After the server revokes the token, concurrent 401s refresh once too.
$node->safe_psql('postgres', "SELECT ductape.http('POST', '$api/oauth/revoke-access')");
@out = two_sessions_at_once();
is($out[0] . $out[1], "/oauth/resource\n/oauth/resource\n", 'both sessions recovered from the 401');
is(count_of('oauth-token'), '2', 'the two 401s caused one refresh between them');

# A rolled-back caller does not lose the token the worker stored.
$node->safe_psql('postgres', q{
BEGIN;
DELETE FROM ductape._oauth_tokens;
COMMIT;
BEGIN;
SELECT ductape.run('sf', 'res');
ROLLBACK;
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM ductape._oauth_tokens'), '1',
	'the token stored during a rolled-back call is kept (the worker committed it)');

$node->stop;
done_testing();
