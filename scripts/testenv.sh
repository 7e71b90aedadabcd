#!/usr/bin/env bash
# testenv.sh - the real servers keymigrate's tests run against, on 127.0.0.1 only.
#
#   scripts/testenv.sh install          Debian packages + Python venvs (Cinder, Keystone, Barbican,
#                                       Glance, Nova; ansible-core and kubernetes-validate for the
#                                       fleet examples in docs/examples/)
#   scripts/testenv.sh up               install if needed, make the test CA and certificates,
#                                       start MariaDB and PostgreSQL (TLS on), Keystone, Barbican,
#                                       Glance and stunnel (HTTPS in front of the three), build the
#                                       Cinder and Nova template databases, write env.sh,
#                                       self-check; idempotent (running servers are left alone,
#                                       except a MariaDB without TLS, restarted once; built
#                                       templates are kept)
#   scripts/testenv.sh down             stop every server `up` started (data is kept)
#   scripts/testenv.sh reset            down, then delete the testenv directory (not the venvs)
#   scripts/testenv.sh restart-mariadb  stop and start MariaDB (tests use it to kill the DB mid-run)
#   scripts/testenv.sh restart-postgres stop and start PostgreSQL
#
# State lives in $KEYMIGRATE_TESTENV (default <repo>/.cache/testenv), venvs in <repo>/.cache/venvs.
# Tests read $KEYMIGRATE_TESTENV/env.sh. All credentials here are throwaway test values.
#
# The template databases are made by each project's own migrations, once, in the background:
#   Cinder  cinder-manage db sync: cinder-template.sqlite, cinder-mysql.sql (a dump of MariaDB's
#           cinder_template), PostgreSQL's template database cinder_template
#   Nova    nova-manage api_db sync (the API database) and db sync --local_cell (a cell's: cell0
#           and every other cell share it): nova-{api,cell}-template.sqlite, nova-{api,cell}-mysql.sql
#           (dumps of MariaDB's nova_api_template and nova_cell_template), PostgreSQL's template
#           databases nova_api_template and nova_cell_template. Nova is never started: the
#           migrations contact no message broker, and the tests write cell_mappings themselves.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# .cache by its real path: a git worktree whose .cache links to another checkout's shares that
# checkout's servers, and writes the same paths into env.sh and the servers' configuration.
mkdir -p "$ROOT/.cache"
CACHE=$(cd "$ROOT/.cache" && pwd -P)
VENVS=$CACHE/venvs
T=${KEYMIGRATE_TESTENV:-$CACHE/testenv}
case $T in /*) ;; *) T=$PWD/$T ;; esac
T=${T%/}
PYTHON=${KEYMIGRATE_PYTHON:-python3}

HOST=127.0.0.1
MY_PORT=13306
PG_PORT=15432
KS_PORT=15000
BB_PORT=19311          # Barbican "public"
BB_PORT2=19312         # Barbican "internal" (same server)
BB_PORT_NOWHERE=19319  # RegionTwo public: nothing listens there
GL_PORT=19292          # Glance (public and internal)
# HTTPS: stunnel in front of Keystone, Barbican and Glance, with the testenv's own CA
KS_TLS_PORT=15443
BB_TLS_PORT=19411
GL_TLS_PORT=19392

DB_USER=kmtest
DB_PW=kmtest-pw
ADMIN_PW=admin-pw
CINDER_USER=cinder
CINDER_PW='cinder-pw$x'
SERVICE_PROJECT=service
DEMO_PROJECT=demo
ALICE_PW=alice-pw
BOB_PW=bob-pw
BARBICAN_USER=barbican
BARBICAN_PW=barbican-svc-pw
APPCRED_NAME=keymigrate-test
GLANCE_USER=glance     # its password is random, made once per testenv: see glance_password
# Users that may connect only over TLS, beside kmtest (which may do either): MariaDB REQUIRE SSL
# and PostgreSQL hostssl-only with a password; with the client certificate (CN kmcert) alone,
# MariaDB REQUIRE SUBJECT and PostgreSQL's `cert` method
DB_TLS_USER=kmtls
DB_TLS_PW=kmtls-pw
DB_CERT_USER=kmcert

# The second line: what building and checking the Debian package needs (scripts/package.sh,
# tests/package.rs): dpkg-shlibdeps, readelf, man, systemctl and systemd-analyze. The third:
# the system Python that Ansible's apt module runs under on tests/ansible.rs's hosts. The
# fourth: the testenv's CA and certificates, the HTTPS terminator.
APT_PACKAGES=(mariadb-server mariadb-client libmariadb-dev postgresql libpq-dev pkg-config
              dpkg-dev binutils man-db systemd
              python3-apt
              openssl stunnel4)
CINDER_PKGS="cinder==29.0.0 PyMySQL psycopg2-binary"
KEYSTONE_PKGS="keystone==30.0.0 gunicorn"
BARBICAN_PKGS="barbican==23.0.0 gunicorn PyMySQL"
GLANCE_PKGS="glance==33.0.0 gunicorn"
NOVA_PKGS="nova==34.0.0 PyMySQL psycopg2-binary"
# ansible-core 2.18 runs its controller on Debian 12's Python 3.11 (2.20 needs 3.12);
# kubernetes-validate carries the Kubernetes schemas, so checking a manifest needs no network.
ANSIBLE_PKGS="ansible-core==2.18.19 kubernetes-validate==1.37.0"

MY_DIR=$T/mariadb
MY_SOCK=$MY_DIR/mysqld.sock
MY_PID=$MY_DIR/mysqld.pid
PG_DIR=$T/postgres
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/sock
KS_DIR=$T/keystone
KS_HOME=$KS_DIR/home
KS_PID=$KS_DIR/gunicorn.pid
BB_DIR=$T/barbican
BB_HOME=$BB_DIR/home
BB_PID=$BB_DIR/gunicorn.pid
GL_DIR=$T/glance
GL_ETC=$GL_DIR/etc     # OS_GLANCE_CONFIG_DIR: glance-api.conf and its paste file
GL_HOME=$GL_DIR/home
GL_PID=$GL_DIR/gunicorn.pid
CI_DIR=$T/cinder
NV_DIR=$T/nova         # Nova's template builds: throwaway nova.conf files, logs, .done markers
TLS_DIR=$T/tls         # the CA, the servers' certificate (127.0.0.1, localhost), a client's
ST_DIR=$T/stunnel
ST_PID=$ST_DIR/stunnel.pid

log() { printf '[testenv %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }
# die with the tail of a log file
die_log() {
    local logf=$1; shift
    printf '[testenv] ERROR: %s\n' "$*" >&2
    if [[ -f $logf ]]; then
        printf '[testenv] ---- last lines of %s ----\n' "$logf" >&2
        tail -n 40 "$logf" >&2 || true
        printf '[testenv] ----\n' >&2
    fi
    exit 1
}
# single-quote a value for a shell file
sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# alive and not a zombie
proc_alive() {
    local pid=$1 st
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    st=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}
pidfile_pid() { [[ -s $1 ]] && head -n1 "$1" | tr -dc 0-9; }
# pid from the file is alive and its command line contains $2
pidfile_alive() {
    local pid
    pid=$(pidfile_pid "$1") || return 1
    proc_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# launch LOG CMD...: detached from this shell (own session, no stdin, output to LOG); echoes the pid
launch() {
    local logf=$1; shift
    setsid nohup "$@" >>"$logf" 2>&1 </dev/null 9>&- &
    echo $!
}

# wait_for NAME TIMEOUT LOG PID CMD...: poll CMD until it succeeds; fail early if PID dies
wait_for() {
    local name=$1 timeout=$2 logf=$3 pid=$4; shift 4
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! proc_alive "$pid"; then
            die_log "$logf" "$name exited while starting"
        fi
        if ((SECONDS >= deadline)); then
            die_log "$logf" "$name did not answer within ${timeout}s"
        fi
        sleep 0.2
    done
}

# stop_pid NAME PIDFILE MATCH: SIGTERM, wait up to 60 s, then SIGKILL
stop_pid() {
    local name=$1 pidf=$2 match=$3 pid i
    if ! pidfile_alive "$pidf" "$match"; then
        rm -f "$pidf"
        return 0
    fi
    pid=$(pidfile_pid "$pidf")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        proc_alive "$pid" || break
        sleep 0.2
    done
    if proc_alive "$pid"; then
        log "$name did not stop after 60 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidf"
}

venv_py() { echo "$VENVS/$1/bin/python"; }

http_status() { # URL -> prints the HTTP status (000 when nothing answers)
    "$(venv_py keystone)" - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}
http_answers() { [[ $(http_status "$1") != 000 ]]; }

# ----------------------------------------------------------------------------------------- install

missing_apt_packages() {
    local p st
    for p in "${APT_PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $st == "install ok installed" ]] || echo "$p"
    done
    # a bare Debian 12 has no python3, or one without venv/ensurepip
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        echo python3
        echo python3-venv
    fi
}

venv_ready() { # NAME PKGS
    local v=$VENVS/$1
    [[ -x $v/bin/python && -f $v/.keymigrate-installed ]] &&
        [[ $(cat "$v/.keymigrate-installed") == "$2" ]] && "$v/bin/python" -c '' 2>/dev/null
}

make_venv() { # NAME PKGS  (runs in the background: its output goes to a log)
    local name=$1 pkgs=$2 v=$VENVS/$1
    rm -f "$v/.keymigrate-installed"
    "$PYTHON" -m venv --clear "$v"
    # shellcheck disable=SC2086
    "$v/bin/pip" install --disable-pip-version-check -q $pkgs
    printf '%s' "$pkgs" >"$v/.keymigrate-installed"
}

install_needed() {
    [[ -z $(missing_apt_packages) ]] || return 0
    venv_ready cinder "$CINDER_PKGS" || return 0
    venv_ready keystone "$KEYSTONE_PKGS" || return 0
    venv_ready barbican "$BARBICAN_PKGS" || return 0
    venv_ready glance "$GLANCE_PKGS" || return 0
    venv_ready nova "$NOVA_PKGS" || return 0
    venv_ready ansible "$ANSIBLE_PKGS" || return 0
    return 1
}

cmd_install() {
    local missing
    missing=$(missing_apt_packages | tr '\n' ' ')
    if [[ -n ${missing// /} ]]; then
        log "apt-get install $missing"
        export DEBIAN_FRONTEND=noninteractive
        mkdir -p "$ROOT/.cache"
        local alog=$ROOT/.cache/apt.log
        apt-get update -q >"$alog" 2>&1 || die_log "$alog" "apt-get update failed"
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing >>"$alog" 2>&1 ||
            die_log "$alog" "apt-get install failed"
    fi
    local -A pids=() logs=()
    local name pkgs
    mkdir -p "$VENVS"
    for name in cinder keystone barbican glance nova ansible; do
        case $name in
            cinder) pkgs=$CINDER_PKGS ;;
            keystone) pkgs=$KEYSTONE_PKGS ;;
            barbican) pkgs=$BARBICAN_PKGS ;;
            glance) pkgs=$GLANCE_PKGS ;;
            nova) pkgs=$NOVA_PKGS ;;
            ansible) pkgs=$ANSIBLE_PKGS ;;
        esac
        venv_ready "$name" "$pkgs" && continue
        log "creating venv $VENVS/$name ($pkgs)"
        logs[$name]=$VENVS/$name.install.log
        make_venv "$name" "$pkgs" >"${logs[$name]}" 2>&1 9>&- &
        pids[$name]=$!
    done
    for name in "${!pids[@]}"; do
        wait "${pids[$name]}" || die_log "${logs[$name]}" "pip install into venv $name failed"
    done
}

# ----------------------------------------------------------------------------------------- MariaDB

my_root() { mariadb --no-defaults --socket="$MY_SOCK" -uroot "$@"; }
mariadb_running() { pidfile_alive "$MY_PID" mariadbd && port_open $MY_PORT; }

start_mariadb() {
    if mariadb_running; then
        log "MariaDB already running on $HOST:$MY_PORT"
        return 0
    fi
    if pidfile_alive "$MY_PID" mariadbd; then
        # running but not answering yet (still starting?)
        wait_for MariaDB 60 "$MY_DIR/mariadbd.log" "$(pidfile_pid "$MY_PID")" port_open $MY_PORT
        return 0
    fi
    port_open $MY_PORT && die "port $MY_PORT is taken by a process this script did not start"
    ((${#MY_SOCK} < 100)) || die "socket path too long for MariaDB: $MY_SOCK (set KEYMIGRATE_TESTENV)"
    mkdir -p "$MY_DIR"
    if [[ ! -f $MY_DIR/.initialized ]]; then
        log "initializing MariaDB in $MY_DIR/data"
        rm -rf "$MY_DIR/data"
        mariadb-install-db --no-defaults --user=root --datadir="$MY_DIR/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$MY_DIR/install.log" 2>&1 ||
            die_log "$MY_DIR/install.log" "mariadb-install-db failed"
        touch "$MY_DIR/.initialized"
    fi
    rm -f "$MY_PID"
    local pid
    pid=$(launch "$MY_DIR/mariadbd.out" mariadbd --no-defaults --user=root \
        --datadir="$MY_DIR/data" --bind-address=$HOST --port=$MY_PORT \
        --socket="$MY_SOCK" --pid-file="$MY_PID" --log-error="$MY_DIR/mariadbd.log" \
        --skip-name-resolve --max-connections=500 \
        --ssl-ca="$TLS_DIR/ca.pem" --ssl-cert="$TLS_DIR/server.pem" --ssl-key="$TLS_DIR/server.key" \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --innodb-flush-log-at-trx-commit=2)
    wait_for MariaDB 60 "$MY_DIR/mariadbd.log" "$pid" \
        mariadb-admin --no-defaults --socket="$MY_SOCK" -uroot ping
    wait_for MariaDB 30 "$MY_DIR/mariadbd.log" "$pid" port_open $MY_PORT
    my_root -e "
        CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PW';
        CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PW';
        GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1' WITH GRANT OPTION;
        GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
        CREATE DATABASE IF NOT EXISTS barbican;" ||
        die_log "$MY_DIR/mariadbd.log" "creating the MariaDB user/database failed"
    log "MariaDB up on $HOST:$MY_PORT (pid $pid)"
}

stop_mariadb() { stop_pid MariaDB "$MY_PID" mariadbd; }

# -------------------------------------------------------------------------------------- PostgreSQL

pg_bin() {
    local d
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        [[ -x $d/pg_ctl ]] && { echo "$d"; return 0; }
    done
    die "PostgreSQL binaries not found under /usr/lib/postgresql (run: $0 install)"
}
as_pg() { runuser -u postgres -- "$@"; }
pg_sql() { # psql as the postgres superuser over the socket; extra args follow
    as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p $PG_PORT -U postgres "$@"
}
postgres_running() { pidfile_alive "$PG_DATA/postmaster.pid" postgres && port_open $PG_PORT; }

start_postgres() {
    if postgres_running; then
        log "PostgreSQL already running on $HOST:$PG_PORT"
        return 0
    fi
    local bin
    bin=$(pg_bin)
    if pidfile_alive "$PG_DATA/postmaster.pid" postgres; then
        # running but not answering yet (still starting?)
        wait_for PostgreSQL 60 "$PG_DIR/log/postgres.log" "$(pidfile_pid "$PG_DATA/postmaster.pid")" \
            port_open $PG_PORT
        return 0
    fi
    port_open $PG_PORT && die "port $PG_PORT is taken by a process this script did not start"
    # after a SIGKILL the lock files stay; here a dead postmaster can linger as a zombie, which
    # PostgreSQL's own stale-lock test (kill(pid, 0)) takes for a live one
    rm -f "$PG_DATA/postmaster.pid" "$PG_SOCK/.s.PGSQL.$PG_PORT.lock"
    mkdir -p "$PG_DIR" "$PG_DIR/log" "$PG_SOCK"
    chown postgres:postgres "$PG_DIR" "$PG_DIR/log" "$PG_SOCK"
    as_pg test -x "$PG_DIR" ||
        die "the postgres user cannot reach $PG_DIR: a parent directory is not world-searchable (chmod o+x it, or set KEYMIGRATE_TESTENV)"
    ((${#PG_SOCK} < 90)) || die "socket directory path too long for PostgreSQL: $PG_SOCK (set KEYMIGRATE_TESTENV)"
    if [[ ! -f $PG_DIR/.initialized ]]; then
        log "initializing PostgreSQL in $PG_DATA"
        rm -rf "$PG_DATA"
        as_pg "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/log/initdb.log" 2>&1 ||
            die_log "$PG_DIR/log/initdb.log" "initdb failed"
        touch "$PG_DIR/.initialized"
    fi
    # -w waits until the server accepts connections; pg_ctl detaches the postmaster itself
    setsid runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/log/postgres.log" -w -t 60 \
        -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_SOCK -c max_connections=300 -c fsync=off" \
        start >"$PG_DIR/log/pg_ctl.log" 2>&1 </dev/null 9>&- ||
        die_log "$PG_DIR/log/postgres.log" "PostgreSQL did not start ($(tail -n 3 "$PG_DIR/log/pg_ctl.log" | tr '\n' ' '))"
    wait_for PostgreSQL 30 "$PG_DIR/log/postgres.log" "" port_open $PG_PORT
    pg_sql -d postgres -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') THEN
                CREATE ROLE $DB_USER;
            END IF;
        END \$\$;" -c "ALTER ROLE $DB_USER WITH SUPERUSER LOGIN PASSWORD '$DB_PW';" ||
        die_log "$PG_DIR/log/postgres.log" "creating the PostgreSQL role failed"
    log "PostgreSQL up on $HOST:$PG_PORT"
}

stop_postgres() {
    if pidfile_alive "$PG_DATA/postmaster.pid" postgres; then
        log "stopping PostgreSQL"
        as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 </dev/null ||
            stop_pid PostgreSQL "$PG_DATA/postmaster.pid" postgres
    fi
}


# ------------------------------------------------------------------------------------ TLS material
# Made once per testenv with openssl (P-256 keys): ca.pem/ca.key, server.pem/server.key (SAN
# IP:127.0.0.1 and DNS:localhost), client.pem/client.key (CN kmcert, clientAuth). Ten years.

make_tls() {
    [[ -s $TLS_DIR/client.pem && -s $TLS_DIR/server.pem && -s $TLS_DIR/ca.pem ]] && return 0
    log "making the testenv's CA and certificates in $TLS_DIR"
    rm -rf "$TLS_DIR.tmp"
    mkdir -p "$TLS_DIR.tmp"
    (
        cd "$TLS_DIR.tmp"
        ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 3650 -subj "/CN=keymigrate test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.pem
        openssl req "${ec[@]}" -keyout client.key -out client.csr -subj "/CN=$DB_CERT_USER"
        printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile client.ext -out client.pem
        cat server.pem server.key >server-bundle.pem
        rm -f ./*.csr ./*.ext ca.srl
        # libpq takes a client key only when no one else may read it
        chmod 0644 ./*.pem
        chmod 0600 ./*.key server-bundle.pem
    ) >"$T/tls.log" 2>&1 || die_log "$T/tls.log" "openssl could not make the test certificates"
    rm -rf "$TLS_DIR"
    mv "$TLS_DIR.tmp" "$TLS_DIR"
}

# A MariaDB started before this script had TLS has no certificate: restarted once.
mariadb_tls() {
    if [[ $(my_root -N -e "SELECT @@have_ssl") != YES ]]; then
        log "MariaDB runs without TLS: restarting it with the testenv's certificate"
        stop_mariadb
        start_mariadb
    fi
    [[ $(my_root -N -e "SELECT @@have_ssl") == YES ]] || die_log "$MY_DIR/mariadbd.log" "MariaDB has no TLS"
    my_root -e "
        CREATE USER IF NOT EXISTS '$DB_TLS_USER'@'127.0.0.1' IDENTIFIED BY '$DB_TLS_PW' REQUIRE SSL;
        ALTER USER '$DB_TLS_USER'@'127.0.0.1' IDENTIFIED BY '$DB_TLS_PW' REQUIRE SSL;
        GRANT ALL PRIVILEGES ON *.* TO '$DB_TLS_USER'@'127.0.0.1';
        CREATE USER IF NOT EXISTS '$DB_CERT_USER'@'127.0.0.1' REQUIRE SUBJECT '/CN=$DB_CERT_USER';
        ALTER USER '$DB_CERT_USER'@'127.0.0.1' REQUIRE SUBJECT '/CN=$DB_CERT_USER';
        GRANT ALL PRIVILEGES ON *.* TO '$DB_CERT_USER'@'127.0.0.1';" ||
        die_log "$MY_DIR/mariadbd.log" "creating MariaDB's TLS users failed"
}

# PostgreSQL's TLS settings change with a reload, no restart: ALTER SYSTEM, pg_hba.conf's lines
# for the TLS-only users first, pg_reload_conf(). Idempotent.
postgres_tls() {
    local keydir=$PG_DIR/tls hba=$PG_DATA/pg_hba.conf i
    mkdir -p "$keydir"
    install -o postgres -g postgres -m 0600 "$TLS_DIR/server.key" "$keydir/server.key"
    install -o postgres -g postgres -m 0644 "$TLS_DIR/server.pem" "$keydir/server.pem"
    install -o postgres -g postgres -m 0644 "$TLS_DIR/ca.pem" "$keydir/ca.pem"
    chown postgres:postgres "$keydir"
    if ! grep -q '^# keymigrate-tls$' "$hba"; then
        {
            echo "# keymigrate-tls"
            echo "hostssl   all $DB_TLS_USER  127.0.0.1/32 scram-sha-256"
            echo "hostnossl all $DB_TLS_USER  0.0.0.0/0    reject"
            echo "hostssl   all $DB_CERT_USER 127.0.0.1/32 cert"
            echo "hostnossl all $DB_CERT_USER 0.0.0.0/0    reject"
            cat "$hba"
        } >"$hba.tmp"
        chown postgres:postgres "$hba.tmp"
        mv "$hba.tmp" "$hba"
    fi
    pg_sql -d postgres -c "ALTER SYSTEM SET ssl = on" \
        -c "ALTER SYSTEM SET ssl_cert_file = '$keydir/server.pem'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$keydir/server.key'" \
        -c "ALTER SYSTEM SET ssl_ca_file = '$keydir/ca.pem'" \
        -c "SELECT pg_reload_conf()" >/dev/null ||
        die_log "$PG_DIR/log/postgres.log" "switching PostgreSQL's TLS on failed"
    for ((i = 0; i < 50; i++)); do
        [[ $(pg_sql -d postgres -tA -c "SHOW ssl") == on ]] && break
        sleep 0.2
    done
    [[ $(pg_sql -d postgres -tA -c "SHOW ssl") == on ]] ||
        die_log "$PG_DIR/log/postgres.log" "PostgreSQL's ssl is not on after a reload"
    pg_sql -d postgres -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_TLS_USER') THEN
                CREATE ROLE $DB_TLS_USER;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_CERT_USER') THEN
                CREATE ROLE $DB_CERT_USER;
            END IF;
        END \$\$;" -c "ALTER ROLE $DB_TLS_USER WITH SUPERUSER LOGIN PASSWORD '$DB_TLS_PW';" \
        -c "ALTER ROLE $DB_CERT_USER WITH SUPERUSER LOGIN;" >/dev/null ||
        die_log "$PG_DIR/log/postgres.log" "creating PostgreSQL's TLS roles failed"
}

# ------------------------------------------------------------------------------ HTTPS (stunnel)
# One stunnel in front of Keystone, Barbican and Glance: TLS with the testenv's server
# certificate on the *_TLS_PORTs, plain HTTP to the servers. Keystone's catalog names Barbican's
# and Glance's in RegionTLS; Glance's internal one as https://localhost:…, so that a lookup by
# interface shows which it took. (Barbican's secret_ref keeps its host_href, http://…:19311:
# keymigrate takes only the secret's ID from it and confirms it at the endpoint it used.)

stunnel_running() { pidfile_alive "$ST_PID" stunnel && port_open $KS_TLS_PORT; }

start_stunnel() {
    local p pid
    mkdir -p "$ST_DIR"
    cat >"$ST_DIR/stunnel.conf.tmp" <<EOF
foreground = yes
pid = $ST_PID
output = $ST_DIR/stunnel.log
cert = $TLS_DIR/server-bundle.pem
[keystone]
accept = $HOST:$KS_TLS_PORT
connect = $HOST:$KS_PORT
[barbican]
accept = $HOST:$BB_TLS_PORT
connect = $HOST:$BB_PORT
[glance]
accept = $HOST:$GL_TLS_PORT
connect = $HOST:$GL_PORT
EOF
    mv "$ST_DIR/stunnel.conf.tmp" "$ST_DIR/stunnel.conf"
    if stunnel_running; then
        log "stunnel already running on $HOST:$KS_TLS_PORT, $BB_TLS_PORT and $GL_TLS_PORT"
        return 0
    fi
    for p in $KS_TLS_PORT $BB_TLS_PORT $GL_TLS_PORT; do
        port_open "$p" && die "port $p is taken by a process this script did not start"
    done
    rm -f "$ST_PID"
    pid=$(launch "$ST_DIR/stunnel.out" stunnel4 "$ST_DIR/stunnel.conf")
    for p in $KS_TLS_PORT $BB_TLS_PORT $GL_TLS_PORT; do
        wait_for stunnel 30 "$ST_DIR/stunnel.out" "$pid" port_open "$p"
    done
    log "stunnel up on $HOST:$KS_TLS_PORT, $BB_TLS_PORT and $GL_TLS_PORT (pid $pid)"
}

stop_stunnel() { stop_pid stunnel "$ST_PID" stunnel; }

# ---------------------------------------------------------------------------------------- Keystone

ks_manage() { HOME=$KS_HOME "$VENVS/keystone/bin/keystone-manage" "$@"; }
keystone_running() { pidfile_alive "$KS_PID" gunicorn && port_open $KS_PORT; }

keystone_configure() {
    mkdir -p "$KS_HOME/.keystone"
    cat >"$KS_HOME/.keystone/keystone.conf" <<EOF
[DEFAULT]
debug = false
[database]
# a writer waits up to 30 s for another (two workers share the file; tests grant and revoke
# roles, create users and projects at once); the default 5 s answers 'database is locked'
connection = sqlite:///$KS_DIR/keystone.sqlite?timeout=30
[identity]
# bcrypt's minimum cost: a test cloud's password checks (every token) stay fast
password_hash_rounds = 4
[token]
provider = fernet
[fernet_tokens]
key_repository = $KS_DIR/fernet-keys
[fernet_receipts]
key_repository = $KS_DIR/fernet-receipts
[credential]
key_repository = $KS_DIR/credential-keys
EOF
    cat >"$KS_DIR/keymigrate_keystone_wsgi.py" <<'EOF'
# gunicorn entry point: Keystone's oslo.config must not parse gunicorn's command line.
import sys
sys.argv = sys.argv[:1]
from keystone.server import wsgi  # noqa: E402
application = wsgi.initialize_public_application()
EOF
}

keystone_bootstrap() { # once per testenv: schema, fernet and credential keys, admin, RegionOne
    [[ -f $KS_DIR/.bootstrapped ]] && return 0
    log "bootstrapping Keystone (sqlite, fernet)"
    local blog=$KS_DIR/bootstrap.log
    rm -rf "$KS_DIR/keystone.sqlite" "$KS_DIR/fernet-keys" "$KS_DIR/fernet-receipts" "$KS_DIR/credential-keys"
    # the key repositories do not need the database: make them while db_sync runs
    ks_manage fernet_setup --keystone-user root --keystone-group root >"$KS_DIR/fernet_setup.log" 2>&1 &
    local fernet_job=$!
    ks_manage credential_setup --keystone-user root --keystone-group root >"$KS_DIR/credential_setup.log" 2>&1 &
    local cred_job=$!
    ks_manage db_sync >"$blog" 2>&1 || die_log "$blog" "keystone-manage db_sync failed"
    wait $fernet_job || die_log "$KS_DIR/fernet_setup.log" "keystone-manage fernet_setup failed"
    wait $cred_job || die_log "$KS_DIR/credential_setup.log" "keystone-manage credential_setup failed"
    ks_manage bootstrap --bootstrap-password "$ADMIN_PW" \
        --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "http://$HOST:$KS_PORT/v3" \
        --bootstrap-public-url "http://$HOST:$KS_PORT/v3" \
        --bootstrap-internal-url "http://$HOST:$KS_PORT/v3" >>"$blog" 2>&1 ||
        die_log "$blog" "keystone-manage bootstrap failed"
    rm -f "$KS_DIR/setup.done" "$KS_DIR/ids.env"
    touch "$KS_DIR/.bootstrapped"
}

start_keystone() {
    if pidfile_alive "$KS_PID" gunicorn; then
        wait_for Keystone 90 "$KS_DIR/keystone.log" "$(pidfile_pid "$KS_PID")" http_answers "http://$HOST:$KS_PORT/v3"
        log "Keystone already running on $HOST:$KS_PORT"
        return 0
    fi
    port_open $KS_PORT && die "port $KS_PORT is taken by a process this script did not start"
    keystone_bootstrap
    # write-ahead logging: readers (every token check) never wait for a writer; the mode is
    # stored in the file, so setting it at each start is idempotent
    python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' \
        "$KS_DIR/keystone.sqlite" || die "cannot switch Keystone's SQLite database to WAL mode"
    rm -f "$KS_PID"
    local pid
    pid=$(HOME=$KS_HOME launch "$KS_DIR/keystone.log" "$VENVS/keystone/bin/gunicorn" \
        --chdir "$KS_DIR" -w 2 -b "$HOST:$KS_PORT" --timeout 120 --pid "$KS_PID" \
        --access-logfile "$KS_DIR/access.log" keymigrate_keystone_wsgi:application)
    wait_for Keystone 90 "$KS_DIR/keystone.log" "$pid" http_answers "http://$HOST:$KS_PORT/v3"
    log "Keystone up on $HOST:$KS_PORT (pid $pid)"
}

stop_keystone() { stop_pid Keystone "$KS_PID" gunicorn; }

# Users, projects, roles, the key-manager catalog and the application credential, via the REST API.
# Idempotent. Writes $KS_DIR/ids.env (shell assignments).
keystone_setup() {
    KS_URL=http://$HOST:$KS_PORT/v3 ADMIN_PW=$ADMIN_PW CINDER_USER=$CINDER_USER CINDER_PW=$CINDER_PW \
        SERVICE_PROJECT=$SERVICE_PROJECT DEMO_PROJECT=$DEMO_PROJECT ALICE_PW=$ALICE_PW BOB_PW=$BOB_PW \
        BARBICAN_USER=$BARBICAN_USER BARBICAN_PW=$BARBICAN_PW APPCRED_NAME=$APPCRED_NAME \
        ENDPOINTS="RegionOne public http://$HOST:$BB_PORT;RegionOne internal http://$HOST:$BB_PORT2;RegionTwo public http://$HOST:$BB_PORT_NOWHERE;RegionTwo internal http://$HOST:$BB_PORT2;RegionTLS public https://$HOST:$BB_TLS_PORT;RegionTLS internal https://$HOST:$BB_TLS_PORT" \
        GLANCE_USER=$GLANCE_USER GLANCE_PW_FILE=$GL_DIR/service-pw \
        IMAGE_ENDPOINTS="RegionOne public http://$HOST:$GL_PORT;RegionOne internal http://$HOST:$GL_PORT;RegionTLS public https://$HOST:$GL_TLS_PORT;RegionTLS internal https://localhost:$GL_TLS_PORT" \
        OUT=$KS_DIR/ids.env \
        "$(venv_py keystone)" - <<'EOF' || die_log "$KS_DIR/keystone.log" "Keystone setup over the REST API failed"
import json, os, shlex, sys, urllib.error, urllib.parse, urllib.request

E = os.environ
KS = E["KS_URL"]

def call(method, path, body=None, token=None, ok=(200, 201, 204)):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(KS + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    if ok is not None and status not in ok:
        sys.exit(f"keystone: {method} {path} -> {status}: {raw[:500]!r}")
    return status, headers, (json.loads(raw) if raw else None)

def password_auth(user, password, project=None):
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}}}
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return call("POST", "/auth/tokens", {"auth": auth}, ok=None)

def token_of(user, password, project):
    st, h, _ = password_auth(user, password, project)
    if st != 201:
        sys.exit(f"keystone: cannot get a token for {user} on {project}: {st}")
    return h["X-Subject-Token"]

admin = token_of("admin", E["ADMIN_PW"], "admin")

def q(**kw):
    return "?" + urllib.parse.urlencode(kw)

def ensure_region(rid):
    st, _, _ = call("GET", f"/regions/{rid}", token=admin, ok=(200, 404))
    if st == 404:
        call("POST", "/regions", {"region": {"id": rid}}, token=admin)

def ensure_project(name):
    _, _, b = call("GET", "/projects" + q(name=name, domain_id="default"), token=admin)
    if b["projects"]:
        return b["projects"][0]["id"]
    return call("POST", "/projects", {"project": {"name": name, "domain_id": "default",
                                                  "enabled": True}}, token=admin)[2]["project"]["id"]

def ensure_role(name):
    _, _, b = call("GET", "/roles" + q(name=name), token=admin)
    roles = [r for r in b["roles"] if r.get("domain_id") is None]
    if roles:
        return roles[0]["id"]
    return call("POST", "/roles", {"role": {"name": name}}, token=admin)[2]["role"]["id"]

def ensure_user(name, password, project_id):
    _, _, b = call("GET", "/users" + q(name=name, domain_id="default"), token=admin)
    if b["users"]:
        uid = b["users"][0]["id"]
        if password_auth(name, password)[0] != 201:
            call("PATCH", f"/users/{uid}", {"user": {"password": password, "enabled": True}},
                 token=admin)
        return uid
    return call("POST", "/users", {"user": {"name": name, "password": password,
                                            "domain_id": "default", "enabled": True,
                                            "default_project_id": project_id}},
                token=admin)[2]["user"]["id"]

def grant(project_id, user_id, role_id):
    call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}", token=admin)

ensure_region("RegionOne")
ensure_region("RegionTwo")
ensure_region("RegionTLS")
service_p = ensure_project(E["SERVICE_PROJECT"])
demo_p = ensure_project(E["DEMO_PROJECT"])
roles = {n: ensure_role(n) for n in ("reader", "member", "admin", "service")}

cinder = ensure_user(E["CINDER_USER"], E["CINDER_PW"], service_p)
grant(service_p, cinder, roles["admin"])
alice = ensure_user("alice", E["ALICE_PW"], demo_p)
grant(demo_p, alice, roles["member"])
bob = ensure_user("bob", E["BOB_PW"], demo_p)
grant(demo_p, bob, roles["member"])
# Barbican's own service user validates tokens (keystone's validate_token allows the service role)
barbican = ensure_user(E["BARBICAN_USER"], E["BARBICAN_PW"], service_p)
grant(service_p, barbican, roles["service"])
# and so does Glance's
with open(E["GLANCE_PW_FILE"]) as f:
    glance_pw = f.read().strip()
glance = ensure_user(E["GLANCE_USER"], glance_pw, service_p)
grant(service_p, glance, roles["service"])

def ensure_service(stype, name, endpoints):
    """The catalog entry `stype`/`name` with exactly `endpoints` ("region iface url;...")."""
    _, _, b = call("GET", "/services" + q(type=stype), token=admin)
    svcs = [s for s in b["services"] if s.get("name") == name]
    if svcs:
        svc = svcs[0]["id"]
    else:
        svc = call("POST", "/services", {"service": {"type": stype, "name": name,
                                                     "enabled": True}}, token=admin)[2]["service"]["id"]
    want = set(tuple(x.split(" ")) for x in endpoints.split(";"))
    _, _, b = call("GET", "/endpoints" + q(service_id=svc), token=admin)
    have = set()
    for ep in b["endpoints"]:
        key = (ep.get("region_id"), ep["interface"], ep["url"])
        if key in want and key not in have and ep.get("enabled", True):
            have.add(key)
        else:
            call("DELETE", f"/endpoints/{ep['id']}", token=admin)
    for region, iface, url in sorted(want - have):
        call("POST", "/endpoints", {"endpoint": {"service_id": svc, "interface": iface, "url": url,
                                                 "region_id": region, "enabled": True}}, token=admin)

ensure_service("key-manager", "barbican", E["ENDPOINTS"])
ensure_service("image", "glance", E["IMAGE_ENDPOINTS"])

# application credential of the cinder user (roles: all of cinder's on the service project)
out = E["OUT"]
prev = {}
if os.path.exists(out):
    for line in open(out):
        k, _, v = line.strip().partition("=")
        if k:
            prev[k] = shlex.split(v)[0] if v else ""
ac_id, ac_secret = prev.get("APPCRED_ID"), prev.get("APPCRED_SECRET")
if ac_id and ac_secret:
    st, _, _ = call("POST", "/auth/tokens", {"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": ac_id, "secret": ac_secret}}}}, ok=None)
    if st != 201:
        ac_id = ac_secret = None
if not (ac_id and ac_secret):
    ctok = token_of(E["CINDER_USER"], E["CINDER_PW"], E["SERVICE_PROJECT"])
    _, _, b = call("GET", f"/users/{cinder}/application_credentials" + q(name=E["APPCRED_NAME"]),
                   token=ctok)
    for ac in b["application_credentials"]:
        call("DELETE", f"/users/{cinder}/application_credentials/{ac['id']}", token=ctok)
    ac = call("POST", f"/users/{cinder}/application_credentials", {"application_credential": {
        "name": E["APPCRED_NAME"], "description": "keymigrate tests",
        "unrestricted": False}}, token=ctok)[2]["application_credential"]
    ac_id, ac_secret = ac["id"], ac["secret"]

vals = {"SERVICE_PROJECT_ID": service_p, "DEMO_PROJECT_ID": demo_p, "CINDER_USER_ID": cinder,
        "ALICE_ID": alice, "BOB_ID": bob, "APPCRED_ID": ac_id, "APPCRED_SECRET": ac_secret}
tmp = out + ".tmp"
with open(tmp, "w") as f:
    for k, v in vals.items():
        f.write(f"{k}={shlex.quote(v)}\n")
os.replace(tmp, out)
EOF
}

# ---------------------------------------------------------------------------------------- Barbican

# Barbican enforces per-project quotas whatever its configuration ([quotas] only sets the
# defaults, -1: no limit). Tests set a project's with PUT /v1/project-quotas/<id> as Keystone's
# admin: Barbican 23's default policy (oslo.policy's new defaults) asks for role admin in a
# project-scoped token; key-manager:service-admin is only its legacy rule, so no role is made.
start_barbican() {
    mkdir -p "$BB_HOME/.barbican"
    if [[ ! -s $BB_DIR/kek ]]; then
        "$(venv_py barbican)" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
            >"$BB_DIR/kek.tmp"
        mv "$BB_DIR/kek.tmp" "$BB_DIR/kek"
    fi
    local kek pw pid
    kek=$(cat "$BB_DIR/kek")
    pw=${BARBICAN_PW//\$/\$\$} # oslo.config interpolates $name: a literal $ is written $$
    cat >"$BB_HOME/.barbican/barbican.conf" <<EOF
[DEFAULT]
debug = false
host_href = http://$HOST:$BB_PORT
[database]
connection = mysql+pymysql://$DB_USER:$DB_PW@$HOST:$MY_PORT/barbican
[secretstore]
enabled_secretstore_plugins = store_crypto
[crypto]
enabled_crypto_plugins = simple_crypto
[simple_crypto_plugin]
kek = $kek
[keystone_authtoken]
www_authenticate_uri = http://$HOST:$KS_PORT
auth_url = http://$HOST:$KS_PORT
auth_type = password
username = $BARBICAN_USER
password = $pw
project_name = $SERVICE_PROJECT
user_domain_name = Default
project_domain_name = Default
service_type = key-manager
EOF
    sed -e "s#^disable_by_file_path *=.*#disable_by_file_path = $BB_DIR/healthcheck_disable#" \
        "$VENVS/barbican/etc/barbican/barbican-api-paste.ini" >"$BB_DIR/barbican-api-paste.ini"
    grep -q "^/v1: barbican-api-keystone$" "$BB_DIR/barbican-api-paste.ini" ||
        die "unexpected barbican-api-paste.ini: /v1 is not the keystone pipeline"
    if pidfile_alive "$BB_PID" gunicorn; then
        pid=$(pidfile_pid "$BB_PID")
        wait_for Barbican 90 "$BB_DIR/barbican.log" "$pid" http_answers "http://$HOST:$BB_PORT/"
        wait_for Barbican 30 "$BB_DIR/barbican.log" "$pid" http_answers "http://$HOST:$BB_PORT2/"
        log "Barbican already running on $HOST:$BB_PORT and $HOST:$BB_PORT2"
        return 0
    fi
    port_open $BB_PORT && die "port $BB_PORT is taken by a process this script did not start"
    port_open $BB_PORT2 && die "port $BB_PORT2 is taken by a process this script did not start"
    if [[ ! -f $BB_DIR/.db-upgraded ]]; then
        log "creating Barbican's schema (barbican-manage db upgrade)"
        HOME=$BB_HOME "$VENVS/barbican/bin/barbican-manage" db upgrade >"$BB_DIR/db-upgrade.log" 2>&1 ||
            die_log "$BB_DIR/db-upgrade.log" "barbican-manage db upgrade failed"
        touch "$BB_DIR/.db-upgraded"
    fi
    rm -f "$BB_PID"
    pid=$(HOME=$BB_HOME launch "$BB_DIR/barbican.log" "$VENVS/barbican/bin/gunicorn" \
        --paste "$BB_DIR/barbican-api-paste.ini" -b "$HOST:$BB_PORT" -b "$HOST:$BB_PORT2" \
        -w 4 --timeout 120 --pid "$BB_PID" --access-logfile "$BB_DIR/access.log")
    wait_for Barbican 90 "$BB_DIR/barbican.log" "$pid" http_answers "http://$HOST:$BB_PORT/"
    wait_for Barbican 30 "$BB_DIR/barbican.log" "$pid" http_answers "http://$HOST:$BB_PORT2/"
    log "Barbican up on $HOST:$BB_PORT and $HOST:$BB_PORT2 (pid $pid)"
}

stop_barbican() { stop_pid Barbican "$BB_PID" gunicorn; }

# ------------------------------------------------------------------------------------------ Glance

glance_running() { pidfile_alive "$GL_PID" gunicorn && port_open $GL_PORT; }

# The password of Glance's service user: random, made once per testenv (0600), never printed.
glance_password() {
    [[ -s $GL_DIR/service-pw ]] && return 0
    mkdir -p "$GL_DIR"
    (umask 077 && python3 -c 'import secrets; print("glance-" + secrets.token_urlsafe(24))' \
        >"$GL_DIR/service-pw.tmp")
    mv "$GL_DIR/service-pw.tmp" "$GL_DIR/service-pw"
}

glance_configure() {
    mkdir -p "$GL_ETC" "$GL_HOME" "$GL_DIR/images" "$GL_DIR/staging" "$GL_DIR/tasks" "$GL_DIR/locks"
    glance_password
    local pw
    pw=$(cat "$GL_DIR/service-pw")
    pw=${pw//\$/\$\$} # oslo.config interpolates $name: a literal $ is written $$
    (umask 077 && cat >"$GL_ETC/glance-api.conf.tmp" <<EOF
[DEFAULT]
debug = false
enabled_backends = fs:file
[database]
# one gunicorn worker: SQLite is enough; a writer waits for another thread's write
connection = sqlite:///$GL_DIR/glance.sqlite?timeout=30
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $GL_DIR/images
[os_glance_staging_store]
filesystem_store_datadir = $GL_DIR/staging
[os_glance_tasks_store]
filesystem_store_datadir = $GL_DIR/tasks
[oslo_concurrency]
lock_path = $GL_DIR/locks
[paste_deploy]
flavor = keystone
config_file = $GL_ETC/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = http://$HOST:$KS_PORT
auth_url = http://$HOST:$KS_PORT
auth_type = password
username = $GLANCE_USER
password = $pw
project_name = $SERVICE_PROJECT
user_domain_name = Default
project_domain_name = Default
service_type = image
[key_manager]
# deleting an image with cinder_encryption_key_deletion_policy = on_image_deletion deletes
# its cinder_encryption_key_id from the test Barbican, with the deleting user's token
backend = barbican
[barbican]
barbican_endpoint = http://$HOST:$BB_PORT
auth_endpoint = http://$HOST:$KS_PORT/v3
EOF
    )
    mv "$GL_ETC/glance-api.conf.tmp" "$GL_ETC/glance-api.conf"
    sed -e "s#^disable_by_file_path *=.*#disable_by_file_path = $GL_DIR/healthcheck_disable#" \
        "$VENVS/glance/etc/glance/glance-api-paste.ini" >"$GL_ETC/glance-api-paste.ini"
    grep -q "^disable_by_file_path = $GL_DIR/healthcheck_disable$" "$GL_ETC/glance-api-paste.ini" ||
        die "unexpected glance-api-paste.ini: no healthcheck disable_by_file_path to point at $GL_DIR"
}

# Needs neither Keystone nor Barbican to start (both are asked from the first request on), so
# `up` runs it in the background, from the start.
start_glance() {
    glance_configure
    local pid
    if pidfile_alive "$GL_PID" gunicorn; then
        wait_for Glance 90 "$GL_DIR/glance.log" "$(pidfile_pid "$GL_PID")" http_answers "http://$HOST:$GL_PORT/"
        log "Glance already running on $HOST:$GL_PORT"
        return 0
    fi
    port_open $GL_PORT && die "port $GL_PORT is taken by a process this script did not start"
    if [[ ! -f $GL_DIR/.db-synced ]]; then
        log "creating Glance's schema (glance-manage db_sync, SQLite)"
        rm -f "$GL_DIR/glance.sqlite"
        HOME=$GL_HOME "$VENVS/glance/bin/glance-manage" --config-file "$GL_ETC/glance-api.conf" db_sync \
            >"$GL_DIR/db-sync.log" 2>&1 || die_log "$GL_DIR/db-sync.log" "glance-manage db_sync failed"
        touch "$GL_DIR/.db-synced"
    fi
    rm -f "$GL_PID"
    # glance.wsgi.api reads glance-api.conf from OS_GLANCE_CONFIG_DIR and ignores gunicorn's
    # command line; gunicorn keeps a control socket under $HOME, hence a HOME of its own
    pid=$(OS_GLANCE_CONFIG_DIR=$GL_ETC HOME=$GL_HOME launch "$GL_DIR/glance.log" \
        "$VENVS/glance/bin/gunicorn" --chdir "$GL_DIR" -b "$HOST:$GL_PORT" -w 1 --timeout 120 \
        --pid "$GL_PID" --access-logfile "$GL_DIR/access.log" glance.wsgi.api:application)
    wait_for Glance 120 "$GL_DIR/glance.log" "$pid" http_answers "http://$HOST:$GL_PORT/"
    log "Glance up on $HOST:$GL_PORT (pid $pid)"
}

stop_glance() { stop_pid Glance "$GL_PID" gunicorn; }

# ---------------------------------------------------------------------- Cinder template databases

cinder_db_sync() { # NAME URL
    local conf=$CI_DIR/$1.conf
    printf '[DEFAULT]\nstate_path = %s\n[database]\nconnection = %s\n' "$CI_DIR/state" "$2" >"$conf"
    "$VENVS/cinder/bin/cinder-manage" --config-file "$conf" db sync
}

build_sqlite_template() {
    local dst=$T/cinder-template.sqlite tmp=$CI_DIR/template.building.sqlite
    [[ -s $dst ]] && return 0
    log "building the SQLite Cinder template"
    rm -f "$tmp"
    cinder_db_sync sqlite "sqlite:///$tmp"
    mv "$tmp" "$dst"
}

my_db_exists() { [[ -n $(my_root -N -e "SHOW DATABASES LIKE '$1'") ]]; }

# my_schema_dump DB FILE: what a test loads into a fresh MariaDB database of its own. One database
# named without --databases: no CREATE DATABASE / USE lines. The first line MariaDB >= 10.11.8
# writes ("/*M!999999\- enable the sandbox mode */") is a command of the mariadb client only;
# sent to a server by a driver it is an empty query, so drop it.
my_schema_dump() {
    local db=$1 dump=$2
    mariadb-dump --no-defaults --socket="$MY_SOCK" -uroot --single-transaction \
        --skip-dump-date --routines --triggers "$db" |
        sed -e '1{/^\/\*M!999999\\- enable the sandbox mode \*\/ *$/d}' >"$dump.tmp"
    if grep -qiE '^(CREATE DATABASE|USE )' "$dump.tmp"; then
        die "mariadb-dump wrote CREATE DATABASE/USE lines into $dump.tmp"
    fi
    mv "$dump.tmp" "$dump"
}

build_mysql_template() {
    local dump=$T/cinder-mysql.sql
    if [[ ! -f $CI_DIR/mysql.done ]] || ! my_db_exists cinder_template; then
        log "building the MariaDB Cinder template (cinder_template)"
        rm -f "$CI_DIR/mysql.done" "$dump"
        my_root -e "DROP DATABASE IF EXISTS cinder_template; CREATE DATABASE cinder_template;"
        cinder_db_sync mysql "mysql+pymysql://$DB_USER:$DB_PW@$HOST:$MY_PORT/cinder_template?charset=utf8"
        touch "$CI_DIR/mysql.done"
    fi
    [[ -s $dump ]] || my_schema_dump cinder_template "$dump"
}

pg_db_exists() {
    [[ $(pg_sql -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$1'") == 1 ]]
}

# pg_new_db NAME: an empty database owned by the test user; an old one (a template too) is dropped
pg_new_db() {
    if pg_db_exists "$1"; then
        pg_sql -d postgres -c "ALTER DATABASE $1 WITH IS_TEMPLATE false" -c "DROP DATABASE $1 WITH (FORCE)"
    fi
    pg_sql -d postgres -c "CREATE DATABASE $1 OWNER $DB_USER ENCODING 'UTF8' TEMPLATE template0"
}

build_pg_template() {
    if [[ -f $CI_DIR/pg.done ]] && pg_db_exists cinder_template; then
        return 0
    fi
    log "building the PostgreSQL Cinder template (cinder_template)"
    rm -f "$CI_DIR/pg.done"
    pg_new_db cinder_template
    cinder_db_sync pg "postgresql+psycopg2://$DB_USER:$DB_PW@$HOST:$PG_PORT/cinder_template"
    pg_sql -d postgres -c "ALTER DATABASE cinder_template WITH IS_TEMPLATE true"
    touch "$CI_DIR/pg.done"
}

# ------------------------------------------------------------------------ Nova template databases
# Two schemas: the API database's (nova-manage api_db sync) and a cell's (nova-manage db sync
# --local_cell: this one database only, no fan-out to cell0 through the API database's mappings).
# cell0 and every other cell share the cell schema. Each build has a throwaway nova.conf naming
# its one database; no Nova service is started and no message broker is contacted.

# nova_manage NAME SECTION URL ARGS...: nova-manage ARGS with $NV_DIR/NAME.conf, whose one
# setting is SECTION's connection = URL (HOME is Nova's own: no ~/.nova is read)
nova_manage() {
    local conf=$NV_DIR/$1.conf section=$2 url=$3
    shift 3
    printf '[DEFAULT]\nstate_path = %s\n[%s]\nconnection = %s\n' "$NV_DIR/state" "$section" "$url" >"$conf"
    HOME=$NV_DIR/home "$VENVS/nova/bin/nova-manage" --config-file "$conf" "$@"
}
nova_sync_api() { nova_manage "$1-api" api_database "$2" api_db sync; }            # NAME URL
nova_sync_cell() { nova_manage "$1-cell" database "$2" db sync --local_cell; }     # NAME URL

build_nova_sqlite_templates() {
    local schema dst tmp
    for schema in api cell; do
        dst=$T/nova-$schema-template.sqlite tmp=$NV_DIR/$schema.building.sqlite
        [[ -s $dst ]] && continue
        log "building the SQLite Nova $schema template"
        rm -f "$tmp"
        "nova_sync_$schema" sqlite "sqlite:///$tmp"
        mv "$tmp" "$dst"
    done
}

build_nova_mysql_templates() {
    local schema db dump
    for schema in api cell; do
        db=nova_${schema}_template dump=$T/nova-$schema-mysql.sql
        if [[ ! -f $NV_DIR/mysql-$schema.done ]] || ! my_db_exists "$db"; then
            log "building the MariaDB Nova $schema template ($db)"
            rm -f "$NV_DIR/mysql-$schema.done" "$dump"
            my_root -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;"
            "nova_sync_$schema" mysql "mysql+pymysql://$DB_USER:$DB_PW@$HOST:$MY_PORT/$db?charset=utf8"
            touch "$NV_DIR/mysql-$schema.done"
        fi
        [[ -s $dump ]] || my_schema_dump "$db" "$dump"
    done
}

# Nova 34's migrations run on PostgreSQL too (checked: both schemas, cell_mappings and instances
# written and read back), although upstream tests them on MariaDB/MySQL and SQLite.
build_nova_pg_templates() {
    local schema db
    for schema in api cell; do
        db=nova_${schema}_template
        if [[ -f $NV_DIR/pg-$schema.done ]] && pg_db_exists "$db"; then
            continue
        fi
        log "building the PostgreSQL Nova $schema template ($db)"
        rm -f "$NV_DIR/pg-$schema.done"
        pg_new_db "$db"
        "nova_sync_$schema" pg "postgresql+psycopg2://$DB_USER:$DB_PW@$HOST:$PG_PORT/$db"
        pg_sql -d postgres -c "ALTER DATABASE $db WITH IS_TEMPLATE true"
        touch "$NV_DIR/pg-$schema.done"
    done
}

# ------------------------------------------------------------------------------------ env.sh, check

write_env() {
    local ids=$KS_DIR/ids.env SERVICE_PROJECT_ID DEMO_PROJECT_ID CINDER_USER_ID ALICE_ID BOB_ID \
        APPCRED_ID APPCRED_SECRET mysql_bin
    # shellcheck disable=SC1090
    source "$ids"
    mysql_bin=$(command -v mariadb) || die "the mariadb client is not installed"
    {
        echo "# Written by scripts/testenv.sh up: the servers of keymigrate's tests (loopback only)."
        local kv k v
        for kv in \
            "KEYMIGRATE_TEST_MYSQL_URL=mysql://$DB_USER:$DB_PW@$HOST:$MY_PORT" \
            "KEYMIGRATE_TEST_PG_URL=postgres://$DB_USER:$DB_PW@$HOST:$PG_PORT" \
            "KEYMIGRATE_TEST_PG_TEMPLATE=cinder_template" \
            "KEYMIGRATE_TEST_SQLITE_TEMPLATE=$T/cinder-template.sqlite" \
            "KEYMIGRATE_TEST_MYSQL_SCHEMA=$T/cinder-mysql.sql" \
            "KEYMIGRATE_TEST_NOVA_API_SQLITE_TEMPLATE=$T/nova-api-template.sqlite" \
            "KEYMIGRATE_TEST_NOVA_CELL_SQLITE_TEMPLATE=$T/nova-cell-template.sqlite" \
            "KEYMIGRATE_TEST_NOVA_API_MYSQL_SCHEMA=$T/nova-api-mysql.sql" \
            "KEYMIGRATE_TEST_NOVA_CELL_MYSQL_SCHEMA=$T/nova-cell-mysql.sql" \
            "KEYMIGRATE_TEST_NOVA_PG_API_TEMPLATE=nova_api_template" \
            "KEYMIGRATE_TEST_NOVA_PG_CELL_TEMPLATE=nova_cell_template" \
            "KEYMIGRATE_TEST_KEYSTONE_URL=http://$HOST:$KS_PORT/v3" \
            "KEYMIGRATE_TEST_BARBICAN_URL=http://$HOST:$BB_PORT" \
            "KEYMIGRATE_TEST_BARBICAN_INTERNAL_URL=http://$HOST:$BB_PORT2" \
            "KEYMIGRATE_TEST_GLANCE_URL=http://$HOST:$GL_PORT" \
            "KEYMIGRATE_TEST_GLANCE_CONF=$GL_ETC/glance-api.conf" \
            "KEYMIGRATE_TEST_CINDER_USER=$CINDER_USER" \
            "KEYMIGRATE_TEST_CINDER_PASSWORD=$CINDER_PW" \
            "KEYMIGRATE_TEST_CINDER_PROJECT=$SERVICE_PROJECT" \
            "KEYMIGRATE_TEST_CINDER_USER_ID=$CINDER_USER_ID" \
            "KEYMIGRATE_TEST_CINDER_PROJECT_ID=$SERVICE_PROJECT_ID" \
            "KEYMIGRATE_TEST_DEMO_PROJECT=$DEMO_PROJECT" \
            "KEYMIGRATE_TEST_DEMO_PROJECT_ID=$DEMO_PROJECT_ID" \
            "KEYMIGRATE_TEST_APPCRED_ID=$APPCRED_ID" \
            "KEYMIGRATE_TEST_APPCRED_SECRET=$APPCRED_SECRET" \
            "KEYMIGRATE_TEST_ALICE_ID=$ALICE_ID" \
            "KEYMIGRATE_TEST_BOB_ID=$BOB_ID" \
            "KEYMIGRATE_TEST_ALICE_PASSWORD=$ALICE_PW" \
            "KEYMIGRATE_TEST_BOB_PASSWORD=$BOB_PW" \
            "KEYMIGRATE_TEST_ADMIN_PASSWORD=$ADMIN_PW" \
            "KEYMIGRATE_TEST_MYSQL_BIN=$mysql_bin" \
            "KEYMIGRATE_TEST_CINDER_MANAGE=$VENVS/cinder/bin/cinder-manage" \
            "KEYMIGRATE_TEST_NOVA_MANAGE=$VENVS/nova/bin/nova-manage" \
            "KEYMIGRATE_TEST_ANSIBLE_PLAYBOOK=$VENVS/ansible/bin/ansible-playbook" \
            "KEYMIGRATE_TEST_KUBERNETES_VALIDATE=$VENVS/ansible/bin/kubernetes-validate" \
            "KEYMIGRATE_TEST_TESTENV_DIR=$T" \
            "KEYMIGRATE_TEST_TLS_CA=$TLS_DIR/ca.pem" \
            "KEYMIGRATE_TEST_TLS_CLIENT_CERT=$TLS_DIR/client.pem" \
            "KEYMIGRATE_TEST_TLS_CLIENT_KEY=$TLS_DIR/client.key" \
            "KEYMIGRATE_TEST_KEYSTONE_TLS_URL=https://$HOST:$KS_TLS_PORT/v3" \
            "KEYMIGRATE_TEST_BARBICAN_TLS_URL=https://$HOST:$BB_TLS_PORT" \
            "KEYMIGRATE_TEST_GLANCE_TLS_URL=https://$HOST:$GL_TLS_PORT" \
            "KEYMIGRATE_TEST_GLANCE_TLS_INTERNAL_URL=https://localhost:$GL_TLS_PORT" \
            "KEYMIGRATE_TEST_DB_TLS_USER=$DB_TLS_USER" \
            "KEYMIGRATE_TEST_DB_TLS_PASSWORD=$DB_TLS_PW" \
            "KEYMIGRATE_TEST_DB_CERT_USER=$DB_CERT_USER"; do
            k=${kv%%=*} v=${kv#*=}
            echo "export $k=$(sq "$v")"
        done
    } >"$T/env.sh.tmp"
    mv "$T/env.sh.tmp" "$T/env.sh"
}

self_check() {
    (
        # shellcheck disable=SC1091
        source "$T/env.sh"
        "$(venv_py keystone)" - <<'EOF'
import base64, json, os, sys, urllib.error, urllib.request

E = os.environ
KS, BB = E["KEYMIGRATE_TEST_KEYSTONE_URL"], E["KEYMIGRATE_TEST_BARBICAN_URL"]
BB2 = E["KEYMIGRATE_TEST_BARBICAN_INTERNAL_URL"]

def fail(msg):
    sys.exit(f"[testenv] SELF-CHECK FAILED: {msg}")

def call(method, url, body=None, token=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()

def token(identity, scope=None, what=""):
    auth = {"identity": identity}
    if scope:
        auth["scope"] = scope
    st, h, b = call("POST", KS + "/auth/tokens", {"auth": auth})
    if st != 201:
        fail(f"token for {what}: HTTP {st} {b[:300]!r}")
    return h["X-Subject-Token"], json.loads(b)["token"]

def pw(user, password, project):
    return token({"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}},
        {"project": {"name": project, "domain": {"name": "Default"}}}, user)

cinder, body = pw(E["KEYMIGRATE_TEST_CINDER_USER"], E["KEYMIGRATE_TEST_CINDER_PASSWORD"],
                  E["KEYMIGRATE_TEST_CINDER_PROJECT"])
eps = sorted((e["region_id"], e["interface"], e["url"]) for s in body.get("catalog", [])
             if s["type"] == "key-manager" for e in s["endpoints"])
BBTLS = E["KEYMIGRATE_TEST_BARBICAN_TLS_URL"]
want = sorted([("RegionOne", "internal", BB2), ("RegionOne", "public", BB),
               ("RegionTwo", "internal", BB2), ("RegionTwo", "public", "http://127.0.0.1:19319"),
               ("RegionTLS", "internal", BBTLS), ("RegionTLS", "public", BBTLS)])
if eps != want:
    fail(f"key-manager catalog is {eps}, wanted {want}")
appcred, body = token({"methods": ["application_credential"], "application_credential": {
    "id": E["KEYMIGRATE_TEST_APPCRED_ID"], "secret": E["KEYMIGRATE_TEST_APPCRED_SECRET"]}},
    what="the application credential")
if body["project"]["name"] != E["KEYMIGRATE_TEST_CINDER_PROJECT"]:
    fail("application credential token is not scoped to the service project")
alice, _ = pw("alice", E["KEYMIGRATE_TEST_ALICE_PASSWORD"], "demo")
bob, _ = pw("bob", E["KEYMIGRATE_TEST_BOB_PASSWORD"], "demo")

key = os.urandom(32)
st, _, b = call("POST", BB + "/v1/secrets", {
    "name": "testenv-self-check", "algorithm": "AES", "bit_length": 256,
    "secret_type": "symmetric", "payload": base64.b64encode(key).decode(),
    "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"},
    token=cinder)
if st != 201:
    fail(f"POST secret as cinder: HTTP {st} {b[:300]!r}")
ref = json.loads(b)["secret_ref"]
sid = ref.rsplit("/", 1)[1]
try:
    if not ref.startswith(BB + "/v1/secrets/"):
        fail(f"secret_ref {ref} is not under {BB}")
    st, _, b = call("PUT", f"{BB}/v1/secrets/{sid}/acl",
                    {"read": {"users": [E["KEYMIGRATE_TEST_ALICE_ID"]], "project-access": True}},
                    token=appcred)
    if st != 200:
        fail(f"PUT acl as the application credential: HTTP {st} {b[:300]!r}")
    for who, tok, base in (("cinder", cinder, BB), ("the application credential", appcred, BB2),
                           ("alice (ACL)", alice, BB)):
        st, _, b = call("GET", f"{base}/v1/secrets/{sid}/payload", token=tok,
                        headers={"Accept": "application/octet-stream"})
        if st != 200 or b != key:
            fail(f"GET payload as {who}: HTTP {st}, {len(b)} bytes, equal={b == key}")
    st, _, b = call("GET", f"{BB}/v1/secrets/{sid}/payload", token=bob,
                    headers={"Accept": "application/octet-stream"})
    if st != 403:
        fail(f"GET payload as bob should be 403, got {st} {b[:200]!r}")
    st, _, b = call("GET", f"{BB}/v1/secrets?name=testenv-self-check", token=appcred,
                    headers={"Accept": "application/json"})
    if st != 200 or sid not in b.decode():
        fail(f"list secrets as the application credential: HTTP {st} {b[:300]!r}")
    st, _, b = call("GET", f"{BB}/v1/secrets/{sid}", headers={"Accept": "application/json"})
    if st != 401:
        fail(f"GET without a token should be 401, got {st}")
finally:
    st, _, b = call("DELETE", f"{BB}/v1/secrets/{sid}", token=cinder)
if st != 204:
    fail(f"DELETE secret as cinder: HTTP {st} {b[:300]!r}")
st, _, _ = call("GET", f"{BB}/v1/secrets/{sid}", token=cinder, headers={"Accept": "application/json"})
if st != 404:
    fail(f"deleted secret still answers {st}")
import ssl
ctx = ssl.create_default_context(cafile=E["KEYMIGRATE_TEST_TLS_CA"])
for url in (E["KEYMIGRATE_TEST_KEYSTONE_TLS_URL"], BBTLS + "/", E["KEYMIGRATE_TEST_GLANCE_TLS_URL"] + "/",
            E["KEYMIGRATE_TEST_GLANCE_TLS_INTERNAL_URL"] + "/"):
    try:
        with urllib.request.urlopen(url, timeout=30, context=ctx) as r:
            st = r.status
    except urllib.error.HTTPError as e:
        st = e.code
    except Exception as e:
        fail(f"GET {url} over TLS with the testenv's CA: {e}")
    if st >= 500:
        fail(f"GET {url} over TLS: HTTP {st}")
print("[testenv] self-check passed: tokens (password, application credential), POST secret, "
      "ACL, payload as cinder/appcred/alice, bob 403, list, DELETE, HTTPS", file=sys.stderr)
EOF
    ) || die_log "$BB_DIR/barbican.log" "self-check failed"
    glance_self_check
}

# What keymigrate's tests do with Glance: an admin creates an image carrying the all-zeros key ID,
# finds it with the property filter, replaces the property (JSON patch) and deletes the image.
glance_self_check() {
    (
        # shellcheck disable=SC1091
        source "$T/env.sh"
        "$(venv_py keystone)" - <<'EOF'
import json, os, sys, urllib.error, urllib.request, uuid

E = os.environ
KS, GL = E["KEYMIGRATE_TEST_KEYSTONE_URL"], E["KEYMIGRATE_TEST_GLANCE_URL"]
ZERO = "00000000-0000-0000-0000-000000000000"

def fail(msg):
    sys.exit(f"[testenv] GLANCE SELF-CHECK FAILED: {msg}")

def call(method, url, body=None, token=None, ctype="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()

st, h, b = call("POST", KS + "/auth/tokens", {"auth": {"identity": {"methods": ["password"],
    "password": {"user": {"name": "admin", "domain": {"name": "Default"},
                          "password": E["KEYMIGRATE_TEST_ADMIN_PASSWORD"]}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
if st != 201:
    fail(f"token for admin: HTTP {st}")
admin = h["X-Subject-Token"]
eps = sorted((e["region_id"], e["interface"], e["url"]) for s in json.loads(b)["token"]["catalog"]
             if s["type"] == "image" for e in s["endpoints"])
want = sorted([("RegionOne", "internal", GL), ("RegionOne", "public", GL),
               ("RegionTLS", "internal", E["KEYMIGRATE_TEST_GLANCE_TLS_INTERNAL_URL"]),
               ("RegionTLS", "public", E["KEYMIGRATE_TEST_GLANCE_TLS_URL"])])
if eps != want:
    fail(f"image catalog is {eps}, wanted {want}")

name = f"testenv-self-check-{uuid.uuid4().hex[:12]}"
st, _, b = call("POST", GL + "/v2/images", {
    "name": name, "disk_format": "raw", "container_format": "bare", "visibility": "private",
    "cinder_encryption_key_id": ZERO,
    "cinder_encryption_key_deletion_policy": "on_image_deletion"}, token=admin)
if st != 201:
    fail(f"POST /v2/images as admin: HTTP {st} {b[:300]!r}")
image = json.loads(b)["id"]
deleted = False
try:
    def listed(key_id):
        url = (f"{GL}/v2/images?cinder_encryption_key_id={key_id}&visibility=all"
               "&os_hidden=false&limit=1000")
        st, _, b = call("GET", url, token=admin)
        if st != 200:
            fail(f"GET /v2/images with the property filter: HTTP {st} {b[:300]!r}")
        return [i["id"] for i in json.loads(b)["images"]]
    if image not in listed(ZERO):
        fail("the image is not listed by cinder_encryption_key_id=<all zeros>")
    new = str(uuid.uuid4())
    st, _, b = call("PATCH", f"{GL}/v2/images/{image}",
                    [{"op": "replace", "path": "/cinder_encryption_key_id", "value": new}],
                    token=admin, ctype="application/openstack-images-v2.1-json-patch")
    if st != 200 or json.loads(b).get("cinder_encryption_key_id") != new:
        fail(f"PATCH cinder_encryption_key_id: HTTP {st} {b[:300]!r}")
    if image in listed(ZERO) or image not in listed(new):
        fail("the property filter does not follow the PATCH")
    # the key manager's delete of an unknown ID is only logged: the image goes anyway
    st, _, b = call("DELETE", f"{GL}/v2/images/{image}", token=admin)
    if st != 204:
        fail(f"DELETE image: HTTP {st} {b[:300]!r}")
    deleted = True
    st, _, _ = call("GET", f"{GL}/v2/images/{image}", token=admin)
    if st != 404:
        fail(f"deleted image still answers {st}")
finally:
    if not deleted:
        call("DELETE", f"{GL}/v2/images/{image}", token=admin)
print("[testenv] Glance self-check passed: image catalog, POST image with the all-zeros key ID, "
      "property filter, JSON-patch replace, DELETE", file=sys.stderr)
EOF
    ) || die_log "$GL_DIR/glance.log" "Glance self-check failed"
}

# ---------------------------------------------------------------------------------------- commands

take_lock() {
    mkdir -p "$(dirname "$T")"
    exec 9>"$T.lock"
    flock -w 600 9 || die "another testenv.sh holds $T.lock"
}

cmd_up() {
    local t0=$SECONDS
    if install_needed; then cmd_install; fi
    take_lock
    mkdir -p "$T" "$CI_DIR/state" "$NV_DIR/home" "$KS_DIR" "$BB_DIR" "$GL_DIR"
    # Slow, independent steps run in the background: Keystone's bootstrap (needs no other
    # server) and the Cinder and Nova templates (once the databases answer).
    local -A jobs=()
    local j f
    keystone_configure
    glance_password
    make_tls
    start_stunnel
    # Glance's first start (schema, loading its WSGI app) is slow and needs no other server
    start_glance >"$GL_DIR/start.out" 2>&1 9>&- &
    local gl_job=$!
    if [[ ! -f $KS_DIR/.bootstrapped ]] && ! keystone_running; then
        log "bootstrapping Keystone in the background"
        keystone_bootstrap 2>"$KS_DIR/bootstrap.out" 9>&- &
        jobs[keystone-bootstrap]=$!
    fi
    start_mariadb
    mariadb_tls
    start_postgres
    postgres_tls
    log "checking/building the Cinder templates in the background"
    build_sqlite_template >"$CI_DIR/sqlite.log" 2>&1 9>&- &
    jobs[sqlite-template]=$!
    build_mysql_template >"$CI_DIR/mysql.log" 2>&1 9>&- &
    jobs[mysql-template]=$!
    build_pg_template >"$CI_DIR/pg.log" 2>&1 9>&- &
    jobs[pg-template]=$!
    log "checking/building the Nova templates in the background"
    build_nova_sqlite_templates >"$NV_DIR/sqlite.log" 2>&1 9>&- &
    jobs[nova-sqlite-templates]=$!
    build_nova_mysql_templates >"$NV_DIR/mysql.log" 2>&1 9>&- &
    jobs[nova-mysql-templates]=$!
    build_nova_pg_templates >"$NV_DIR/pg.log" 2>&1 9>&- &
    jobs[nova-pg-templates]=$!
    # Barbican needs MariaDB now, Keystone only from its first authenticated request on.
    start_barbican >"$BB_DIR/start.out" 2>&1 9>&- &
    local bb_job=$!
    if [[ -n ${jobs[keystone-bootstrap]:-} ]]; then
        wait "${jobs[keystone-bootstrap]}" || die_log "$KS_DIR/bootstrap.out" "Keystone bootstrap failed"
        unset "jobs[keystone-bootstrap]"
    fi
    start_keystone
    local stamp
    # the setup follows this script and Glance's service password
    stamp=$(cat "${BASH_SOURCE[0]}" "$GL_DIR/service-pw" | sha256sum | cut -c1-64)
    if [[ -s $KS_DIR/ids.env && -f $KS_DIR/setup.done && $(cat "$KS_DIR/setup.done") == "$stamp" ]]; then
        log "Keystone's users, projects, catalog and application credential are set up already"
    else
        log "creating Keystone's users, projects, catalog and application credential"
        keystone_setup
        echo "$stamp" >"$KS_DIR/setup.done"
    fi
    wait "$bb_job" || die_log "$BB_DIR/start.out" "starting Barbican failed"
    cat "$BB_DIR/start.out" >&2
    wait "$gl_job" || die_log "$GL_DIR/start.out" "starting Glance failed"
    cat "$GL_DIR/start.out" >&2
    for j in "${!jobs[@]}"; do
        case $j in
            sqlite-template) f=$CI_DIR/sqlite.log ;;
            mysql-template) f=$CI_DIR/mysql.log ;;
            pg-template) f=$CI_DIR/pg.log ;;
            nova-sqlite-templates) f=$NV_DIR/sqlite.log ;;
            nova-mysql-templates) f=$NV_DIR/mysql.log ;;
            *) f=$NV_DIR/pg.log ;;
        esac
        wait "${jobs[$j]}" || die_log "$f" "building the $j failed"
    done
    write_env
    self_check
    log "up in $((SECONDS - t0)) s; source $T/env.sh"
}

cmd_down() {
    take_lock
    stop_stunnel
    stop_glance
    stop_barbican
    stop_keystone
    stop_postgres
    stop_mariadb
    log "down"
}

cmd_reset() {
    cmd_down
    [[ -n $T && $T != / && $T != "$ROOT" ]] || die "refusing to delete $T"
    rm -rf "$T"
    log "removed $T"
}

case ${1:-} in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    reset) cmd_reset ;;
    restart-mariadb) take_lock; make_tls; stop_mariadb; start_mariadb ;;
    restart-postgres) take_lock; stop_postgres; start_postgres ;;
    *)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
