#!/bin/sh
# Make a private CA and one server certificate for every service name used in deploy/:
# compose (reward, rollout), Kubernetes (reward, *.rollout and their namespace forms) and
# localhost (the health probe). Writes ca.crt, ca.key, tls.crt, tls.key into DIR (default ./certs).
#   sh deploy/make-certs.sh deploy/certs [NAMESPACE]   (default namespace: grpo)
# gRPC accepts a wildcard only above two labels, so Kubernetes peers are named
# rollout-0.rollout.NAMESPACE.svc (matched by *.rollout.NAMESPACE.svc), not rollout-0.rollout.
# For production use your own PKI; this is for a first deployment and for the tests.
set -eu
dir=${1:-certs}
ns=${2:-grpo}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=grpo-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=grpo" -keyout tls.key -out tls.csr 2>/dev/null
san="DNS:localhost,IP:127.0.0.1,DNS:reward,DNS:rollout"
san="$san,DNS:reward.$ns.svc,DNS:*.rollout.$ns.svc,DNS:reward.$ns.svc.cluster.local"
san="$san,DNS:*.rollout.$ns.svc.cluster.local"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > ext.cnf
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile ext.cnf -out tls.crt 2>/dev/null
rm -f tls.csr ext.cnf ca.srl
chmod 0644 ca.crt tls.crt tls.key  # the image runs as uid 10001, which must read the key
echo "wrote $dir/ca.crt $dir/tls.crt $dir/tls.key (SANs: $san)"
