#!/bin/sh
# Prints the draft 4 cases of the JSON Schema Test Suite (npm package
# json-schema-test-suite 0.0.10, MIT, vendored in test/data) as one JSON
# object: {"type.json": [...groups...], "optional/format.json": [...], ...}.
set -eu
tgz="$(dirname "$0")/data/json-schema-test-suite-0.0.10.tgz"
printf '{'
for f in $(tar -tzf "$tgz" | grep '^package/tests/draft4/.*\.json$' | sort); do
	printf '"%s":' "${f#package/tests/draft4/}"
	tar -xzOf "$tgz" "$f"
	printf ','
done
printf '"":[]}\n'
