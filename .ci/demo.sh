# Sourced by the .ci scripts that test a running gateway (schemathesis.sh, promtool.sh,
# clients.sh), from the repository root.
#
# `start_demo` builds the debug binary, starts `usage-gateway demo` on a free port and sets
# `url` and `token` from its banner, `demo` to its process id and `work` to a scratch directory;
# both are gone when the script exits.
start_demo() {
  cargo build --quiet --locked -p usage-gateway
  work=$(mktemp -d)
  target/debug/usage-gateway demo --listen 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
  demo=$!
  trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 1 600); do
    grep -q "^export TOKEN='" "$work/stdout" && break
    if ! kill -0 "$demo" 2>/dev/null; then
      echo "the demo gateway exited:" >&2
      cat "$work/stderr" >&2
      exit 1
    fi
    sleep 0.1
  done
  url=$(sed -n 's/^usage-gateway demo is running at //p' "$work/stdout")
  token=$(sed -n "s/^export TOKEN='\(.*\)'\$/\1/p" "$work/stdout")
  if [ -z "$url" ] || [ -z "$token" ]; then
    echo "the demo gateway printed no URL or token:" >&2
    cat "$work/stdout" "$work/stderr" >&2
    exit 1
  fi
}
