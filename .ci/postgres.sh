# A throw-away PostgreSQL cluster for the usage-store tests, under target/pg.
#
# Sourced by .ci/run, from the repository root:
#   . .ci/postgres.sh; pg_start; trap pg_stop EXIT
# `pg_start` installs Debian's `postgresql` when initdb is missing, creates a fresh cluster in
# target/pg/data (owned by the `postgres` user when run as root: initdb refuses root), starts it
# on a free port on 127.0.0.1 with its socket in target/pg/sock, password authentication and a
# random password and TLS (a certificate for 127.0.0.1 from a throw-away CA), creates the database
# `usage_store_test` and exports USAGE_GATEWAY_TEST_DATABASE_URL and
# USAGE_GATEWAY_TEST_DATABASE_CA (the CA, for sslmode=verify-full). `pg_stop` stops it
# (the files stay until the next start).
#
# By hand: `bash .ci/postgres.sh` starts a cluster and prints the export line; `bash
# .ci/postgres.sh stop` stops it.

pg_bin_dir() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  # Debian keeps the server binaries out of PATH, one directory per major version.
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

pg_start() {
  local started=$SECONDS bin root data sock port password as=()
  if ! bin=$(pg_bin_dir); then
    echo "installing Debian's postgresql (initdb not found)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(pg_bin_dir) || { echo "postgresql installed, but no initdb found" >&2; return 1; }
  fi
  root="$PWD/target/pg"
  pg_stop >/dev/null 2>&1 || true
  rm -rf "$(readlink -f "$root")" "$root"
  mkdir -p "$root/data" "$root/sock"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$root"
    as=(runuser -u postgres --)
    if ! "${as[@]}" test -w "$root/data"; then
      # The checkout's directories are closed to the postgres user: use a scratch directory.
      rm -rf "$root"
      root=$(mktemp -d /tmp/usage-store-pg.XXXXXX)
      mkdir -p "$root/data" "$root/sock"
      chown -R postgres: "$root"
      ln -s "$root" "$PWD/target/pg"
      echo "target/ is closed to the postgres user: the cluster lives in $root (target/pg links there)"
    fi
  fi
  data="$root/data"
  sock="$root/sock"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$root/pwfile"
  [ ${#as[@]} -eq 0 ] || chown postgres: "$root/pwfile"
  # In $root: the postgres user may not enter the caller's directory.
  (
    cd "$root"
    "${as[@]}" "$bin/initdb" --pgdata="$data" --username=postgres --pwfile="$root/pwfile" \
      --auth=scram-sha-256 --encoding=UTF8 --no-locale --no-sync >"$root/initdb.log" 2>&1 \
      || { cat "$root/initdb.log" >&2; exit 1; }
    rm -f "$root/pwfile"
    # TLS on: a throw-away CA (exported below as USAGE_GATEWAY_TEST_DATABASE_CA) signs the
    # server's certificate for 127.0.0.1, so that clients can verify it (sslmode=verify-full).
    command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
    openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=usage-gateway test CA" \
      -keyout "$root/ca.key" -out "$root/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$root/server.key" -out "$root/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$root/server.ext"
    openssl x509 -req -in "$root/server.csr" -CA "$root/ca.crt" -CAkey "$root/ca.key" \
      -CAcreateserial -days 3 -extfile "$root/server.ext" -out "$root/server.crt" >/dev/null 2>&1
    chmod 600 "$root/server.key"
    chmod 644 "$root/server.crt" "$root/ca.crt"
    [ ${#as[@]} -eq 0 ] || chown postgres: "$root/server.key" "$root/server.crt"
    # Durability settings off: the cluster is thrown away, and the tests never crash the server.
    "${as[@]}" "$bin/pg_ctl" --pgdata="$data" --log="$root/server.log" --wait --timeout=60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$root/server.crt -c ssl_key_file=$root/server.key" \
      start >/dev/null || { cat "$root/server.log" >&2; exit 1; }
    PGPASSWORD="$password" "$bin/psql" --quiet --no-psqlrc --host=127.0.0.1 --port="$port" \
      --username=postgres --dbname=postgres -v ON_ERROR_STOP=1 \
      -c 'CREATE DATABASE usage_store_test' >/dev/null
  ) || return 1
  PG_CI_DATA="$data"
  PG_CI_BIN="$bin"
  export USAGE_GATEWAY_TEST_DATABASE_URL="postgres://postgres:$password@127.0.0.1:$port/usage_store_test"
  export USAGE_GATEWAY_TEST_DATABASE_CA="$root/ca.crt"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $data), ready in $((SECONDS - started)) s"
}

pg_stop() {
  local data bin=${PG_CI_BIN:-}
  data=${PG_CI_DATA:-$(readlink -f "$PWD/target/pg")/data}
  [ -n "$bin" ] || bin=$(pg_bin_dir) || return 0
  [ -f "$data/postmaster.pid" ] || return 0
  local as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  (cd "$data/.." && "${as[@]}" "$bin/pg_ctl" --pgdata="$data" --mode=fast --wait stop >/dev/null)
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  case "${1:-start}" in
    start)
      pg_start
      echo "export USAGE_GATEWAY_TEST_DATABASE_URL='$USAGE_GATEWAY_TEST_DATABASE_URL'"
      echo "export USAGE_GATEWAY_TEST_DATABASE_CA='$USAGE_GATEWAY_TEST_DATABASE_CA'"
      ;;
    stop) pg_stop ;;
    *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
  esac
fi
