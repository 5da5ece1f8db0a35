#!/bin/sh
# One-shot of docker-compose.scale.yml: a private CA and a certificate for MinIO and PostgreSQL
# (the network between the instances and them is TLS, as everywhere else), made once into the
# `certs` volume. Replace them with your own CA's by putting ca.crt, server.crt and server.key
# in that volume first.
set -eu
cd /certs
[ -f server.crt ] && exit 0
apk add --no-cache openssl >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ari-recorder scale CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=minio" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:minio,DNS:postgres\nbasicConstraints=CA:FALSE\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile server.ext -out server.crt 2>/dev/null
# MinIO reads public.crt / private.key; PostgreSQL wants its key owned by its user (uid 999).
mkdir -p minio postgres
cp server.crt minio/public.crt && cp server.key minio/private.key
cp server.crt postgres/server.crt && cp server.key postgres/server.key
chown -R 999:999 postgres && chmod 600 postgres/server.key
chmod 644 ca.crt
rm -f server.csr server.ext ca.key
