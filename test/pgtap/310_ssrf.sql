-- The SSRF guard (src/ssrf.c) through ventros.check_url: a catalogue of
-- targets that must be refused (numeric IPv4 spellings, IPv4-mapped and
-- NAT64/6to4 IPv6, 0.0.0.0, localhost names, metadata, private, link-local,
-- CGNAT, multicast, reserved, IPv6 ULA/link-local/multicast, bad schemes,
-- userinfo, zone ids, and names from /etc/hosts that resolve to private
-- addresses), then what the operator allow-list permits and no more.
-- No network is needed: every target is a literal or a local name.
BEGIN;
SELECT plan(100);

SET LOCAL ventros.http_allow_hosts = '';

CREATE TEMP TABLE refused (url text, why text);
INSERT INTO refused VALUES
    ('http://127.0.0.1/', 'loopback'),
    ('https://127.0.0.1:5432/', 'loopback'),
    ('http://127.255.255.254/', 'loopback'),
    ('http://2130706433/', 'loopback'),
    ('http://0x7f000001/', 'loopback'),
    ('http://0x7F.0x00.0x00.0x01/', 'loopback'),
    ('http://0177.0.0.1/', 'loopback'),
    ('http://017700000001/', 'loopback'),
    ('http://127.1/', 'loopback'),
    ('http://127.0.1/', 'loopback'),
    ('http://0.0.0.0/', 'this network'),
    ('http://0/', 'this network'),
    ('https://0.0.0.0:443/', 'this network'),
    ('http://[::]/', 'unspecified'),
    ('http://[::1]/', 'loopback'),
    ('http://[0:0:0:0:0:0:0:1]/', 'loopback'),
    ('http://[::ffff:127.0.0.1]/', 'loopback'),
    ('http://[::ffff:7f00:1]/', 'loopback'),
    ('http://[0:0:0:0:0:ffff:127.0.0.1]/', 'loopback'),
    ('http://[::ffff:10.0.0.1]/', 'private'),
    ('http://[::ffff:169.254.169.254]/', 'metadata'),
    ('http://[::127.0.0.1]/', 'IPv4-compatible'),
    ('http://[64:ff9b::7f00:1]/', 'loopback'),
    ('http://[64:ff9b::a9fe:a9fe]/', 'metadata'),
    ('http://[64:ff9b::c0a8:101]/', 'private'),
    ('http://[2002:7f00:1::]/', 'loopback'),
    ('http://[2002:a00:1::]/', 'private'),
    ('http://localhost/', 'localhost name'),
    ('http://LOCALHOST/', 'localhost name'),
    ('http://localhost./', 'localhost name'),
    ('http://foo.localhost/', 'localhost name'),
    ('https://a.b.localhost:8443/x', 'localhost name'),
    ('http://metadata/', 'metadata name'),
    ('http://metadata.google.internal/computeMetadata/v1/', 'metadata name'),
    ('http://169.254.169.254/latest/meta-data/', 'metadata'),
    ('http://169.254.1.1/', 'link-local'),
    ('http://10.0.0.1/', 'private'),
    ('http://10.255.255.255/', 'private'),
    ('http://172.16.0.1/', 'private'),
    ('http://172.31.255.255/', 'private'),
    ('http://192.168.1.1/', 'private'),
    ('http://100.64.0.1/', 'carrier-grade NAT'),
    ('http://100.127.255.254/', 'carrier-grade NAT'),
    ('http://192.0.0.1/', 'IETF protocol'),
    ('http://192.0.2.10/', 'documentation'),
    ('http://198.18.0.1/', 'benchmarking'),
    ('http://198.51.100.7/', 'documentation'),
    ('http://203.0.113.9/', 'documentation'),
    ('http://224.0.0.1/', 'multicast'),
    ('http://239.255.255.250/', 'multicast'),
    ('http://240.0.0.1/', 'reserved'),
    ('http://255.255.255.255/', 'broadcast'),
    ('http://[fc00::1]/', 'unique local'),
    ('http://[fd12:3456:789a::1]/', 'unique local'),
    ('http://[fe80::1]/', 'link-local'),
    ('http://[febf::1]/', 'link-local'),
    ('http://[fec0::1]/', 'site-local'),
    ('http://[ff02::1]/', 'multicast'),
    ('http://[2001:db8::1]/', 'documentation'),
    ('http://[2001:0:4136:e378::1]/', 'Teredo'),
    ('http://[fe00::1]/', 'not global unicast'),
    ('http://[4000::1]/', 'not global unicast'),
    ('http://[fe80::1%25eth0]/', 'zone'),
    ('https://user:secret@example.com/', 'userinfo'),
    ('https://user@example.com/', 'userinfo'),
    ('ftp://example.com/file', 'scheme'),
    ('file:///etc/passwd', 'scheme'),
    ('gopher://127.0.0.1:70/', 'scheme'),
    ('dict://127.0.0.1:11211/stat', 'scheme'),
    ('http://1.1.1.1/', 'plain http'),
    ('https://exämple.com/', 'not ASCII');

-- one assertion per target: refused, for the right reason
SELECT ok(ventros.check_url(url) ~* why,
          format('%s is refused (%s): %s', url, why, coalesce(ventros.check_url(url), 'ALLOWED')))
  FROM refused;

SELECT cmp_ok((SELECT count(*) FROM refused)::int, '>=', 30, 'the catalogue has at least 30 targets');

-- Names that resolve (through /etc/hosts, no network) to a refused address
-- but are no localhost name: refused for their addresses.
CREATE TEMP TABLE hosts_names AS
SELECT DISTINCT lower(name) AS name, split_part(line, ' ', 1) AS addr
  FROM (SELECT regexp_replace(btrim(l), '\s+', ' ', 'g') AS line
          FROM regexp_split_to_table(pg_read_file('/etc/hosts'), E'\n') l) x,
       LATERAL unnest((string_to_array(line, ' '))[2:]) name
 WHERE line !~ '^#' AND line <> ''
   AND lower(name) !~ '(^|\.)localhost\.?$' AND name !~ '^#'
   AND (split_part(line, ' ', 1) ~ '^(127\.|10\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.)'
        OR split_part(line, ' ', 1) IN ('::1', 'fe00::0', 'ff00::0', 'ff02::1', 'ff02::2'));
SELECT ok((SELECT count(*) FROM hosts_names
            WHERE ventros.check_url('https://' || name || '/') ~ 'resolves to .* address') > 0,
          'a name from /etc/hosts with a private address is refused for that address');
SELECT is((SELECT string_agg(name, ', ') FROM hosts_names WHERE ventros.check_url('https://' || name || '/') IS NULL),
          NULL, 'no /etc/hosts name with a private address is allowed');

-- allowed: public literals over https
SELECT is(ventros.check_url('https://1.1.1.1/'), NULL, 'a public IPv4 over https is allowed');
SELECT is(ventros.check_url('https://8.8.8.8:8443/path?q=1'), NULL, 'a public IPv4 with a port is allowed');
SELECT is(ventros.check_url('https://[2606:4700:4700::1111]/'), NULL, 'a public IPv6 over https is allowed');
SELECT is(ventros.check_url('https://[::ffff:8.8.8.8]/'), NULL, 'a mapped public IPv4 is allowed');

-- the operator allow-list
SET LOCAL ventros.http_allow_hosts = '127.0.0.1/32, 10.0.0.0/8, ::1/128';
SELECT is(ventros.check_url('http://127.0.0.1:8080/hook'), NULL, 'an allow-listed CIDR permits loopback, plain http included');
SELECT is(ventros.check_url('http://2130706433:8080/'), NULL, 'the allow-list matches the resolved address, not the spelling');
SELECT is(ventros.check_url('http://[::1]:9000/'), NULL, 'an allow-listed IPv6 CIDR');
SELECT is(ventros.check_url('http://10.20.30.40/'), NULL, 'a wider allow-listed CIDR');
SELECT ok(ventros.check_url('http://127.0.0.2/') ~ 'loopback', 'an address outside the allow-listed CIDR stays refused');
SELECT ok(ventros.check_url('http://localhost:8080/') ~ 'localhost name', 'a CIDR does not allow localhost names');
SELECT ok(ventros.check_url('http://169.254.169.254/') ~ 'metadata', 'the metadata address stays refused');
SELECT ok(ventros.check_url('ftp://127.0.0.1/') ~ 'scheme', 'the allow-list never allows other schemes');

SET LOCAL ventros.http_allow_hosts = 'localhost, *.internal.test';
SELECT is(ventros.check_url('http://localhost:3000/'), NULL, 'an allow-listed name skips the name and address rules');
SELECT is(ventros.check_url('http://LOCALHOST./'), NULL, 'names are matched normalised (case, trailing dot)');
SELECT ok(ventros.check_url('http://foo.localhost/') ~ 'localhost name', 'an exact name does not cover its subdomains');
SELECT ok(ventros.check_url('http://127.0.0.1/') ~ 'loopback', 'a name entry does not allow the address itself');

SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = '10.0.0.0/99'$$, '22023', NULL,
                 'a malformed CIDR in the allow-list is refused');
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = 'bad host!'$$, '22023', NULL,
                 'a malformed host name in the allow-list is refused');
-- a wildcard covers the subdomains of one registrable name, never more
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = '*.'$$, '22023', NULL,
                 'the wildcard "*." (every host) is refused');
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = 'localhost, *.com'$$, '22023', NULL,
                 'a wildcard over a top-level domain is refused');
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = '*.com.'$$, '22023', NULL,
                 'also spelled with a trailing dot');
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = '*.0.1'$$, '22023', NULL,
                 'a wildcard ending in digits (it would name loopback addresses) is refused');
SELECT throws_ok($$SET LOCAL ventros.http_allow_hosts = '*..example.com'$$, '22023', NULL,
                 'a wildcard with an empty label is refused');
SELECT lives_ok($$SET LOCAL ventros.http_allow_hosts = '*.example.com'$$,
                'a wildcard under a registrable name is accepted');
SELECT ok(ventros.check_url('http://other.test/') IS NOT NULL AND ventros.check_url('http://127.0.0.1/') ~ 'loopback',
          'and covers nothing outside it');
SELECT is((SELECT context FROM pg_settings WHERE name = 'ventros.http_allow_hosts'), 'superuser',
          'only superusers may change the allow-list');

SELECT * FROM finish();
ROLLBACK;
