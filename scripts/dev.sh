#!/usr/bin/env bash
# Sets up what Switchyard needs, then runs a deno task: `bash scripts/dev.sh demo|test|bench|start`.
# - Deno: exactly the version in .deno-version (see shared notes on node:http2 in README),
#   installed from the npm registry into .tools/ when `deno` is missing or differs.
# - redis-server, redis-sentinel and h2load (tests, bench): from Debian when missing and we are root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(tr -d '[:space:]' < "$root/.deno-version")
tools="$root/.tools/deno-$want"

have_deno() { command -v deno >/dev/null 2>&1 && [ "$(deno --version | awk 'NR==1{print $2}')" = "$want" ]; }
if ! have_deno; then
  if [ ! -x "$tools/package/bin/deno" ] && [ ! -x "$tools/package/deno" ]; then
    echo "installing deno $want from the npm registry into $tools" >&2
    mkdir -p "$tools"
    (cd "$tools" && npm pack --silent "@deno/linux-x64-glibc@$want" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
  fi
  export PATH="$tools/package:$PATH"
  have_deno || { echo "deno $want is not usable from $tools" >&2; exit 1; }
fi

need_debian() { # need_debian COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 from Debian" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >/dev/null
  else
    echo "warning: $1 is missing (Debian package $2); some tests or benchmarks need it" >&2
  fi
}
[ $# -gt 0 ] || set -- demo
case "$1" in
  test)
    need_debian redis-server redis-server; need_debian h2load nghttp2-client; need_debian chromium chromium
    # The Sentinel tests run `redis-server --sentinel` when Debian's redis-sentinel is absent.
    need_debian redis-sentinel redis-sentinel
    # The TLS tests make their certificates with openssl; systemd-analyze checks the unit.
    need_debian openssl openssl; need_debian systemd-analyze systemd
    # The second client stack (gRPC C-core) and raw-frame peers run on Debian's system python.
    /usr/bin/python3 -c 'import grpc' 2>/dev/null || need_debian python3-grpcio python3-grpcio ;;
  bench) need_debian h2load nghttp2-client; need_debian nginx nginx-light ;;
esac

cd "$root"
deno install --quiet
# The hostile-input tests and the bench open thousands of connections.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec deno task "$@"
