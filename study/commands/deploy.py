"""`camstudy deploy STUDY_DIR --host H --workers N --out DIR`: a deployment a lab can copy.

Writes into DIR:

- `camstudy.conf`: nginx's http-level configuration for this machine: HTTPS for H (HTTP redirects to
  it), the N workers of `camstudy serve STUDY --workers N` as one upstream with sticky sessions, and
  the stimuli served by nginx itself from the study folder's `public/`. Copy it into
  /etc/nginx/conf.d/, or run nginx with `nginx.conf` beside it.
- `nginx.conf`: a complete nginx configuration around `camstudy.conf` (pid, logs and temporary files
  under DIR/run), for `nginx -p DIR -c nginx.conf`.
- `compose.yaml`, `compose/camstudy.conf`, `Dockerfile`: the same for Docker: PostgreSQL, the workers
  and nginx as three services.
- `README.md`: the steps, in this order.

Sticky sessions with the open-source nginx: the first response gives the browser a random route cookie,
and the upstream is chosen by a consistent hash of it, so the page, its websocket and every reconnect of
one browser reach the same worker (its Streamlit session, and so the participant's screen, lives in that
worker's memory). If that worker is down, nginx takes the next one on the hash ring; the participant's
progress is in the database, so they continue there. Stimuli need no stickiness: they are static files
with content-hash names, served by nginx without touching a worker.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROUTE_COOKIE = "camstudy_route"
COMPOSE_SUBNET = "172.30.80.0/24"      # the compose network: the workers trust the proxy in it, no one else
COMPOSE_PORT = 8501


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="study folder made by `camstudy build`")
    parser.add_argument("--host", required=True, help="the host name participants open (the certificate's name)")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2; more than one needs "
                        "PostgreSQL)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the configuration into")
    parser.add_argument("--port", type=int, default=8501, help="first worker port on this machine (default 8501)")
    parser.add_argument("--https-port", type=int, default=443, help="port nginx serves HTTPS on (default 443)")
    parser.add_argument("--http-port", type=int, default=80,
                        help="port nginx redirects plain HTTP from (default 80; 0: none)")
    parser.add_argument("--certificate", type=Path, help="TLS certificate chain (default: Let's Encrypt's "
                        "/etc/letsencrypt/live/HOST/fullchain.pem)")
    parser.add_argument("--key", type=Path, help="its private key (default: .../privkey.pem beside it)")


# nginx adds a server's add_header lines only to locations that have none of their own: every location that
# sets a header repeats this one, so that every response tells the browser to keep to HTTPS.
HSTS = 'add_header Strict-Transport-Security "max-age=31536000" always;'


def nginx_site(*, host: str, upstreams: list[str], stimuli: Path | str, certificate: Path | str, key: Path | str,
               access_log: Path | str, https_port: int = 443, http_port: int = 80,
               streamlit_static: Path | None = None) -> str:
    """nginx's http-level configuration: HTTPS for `host` in front of `upstreams` (host:port of each worker),
    sticky by a route cookie, with the published stimuli served from `stimuli` (the study's public/) and,
    given `streamlit_static` (the installed Streamlit's static/ folder), the page's scripts and styles too.
    Requests are logged to `access_log` (an absolute path: the file is opened by nginx's master, whether
    nginx runs from this folder or as the system's) without the client's address or the query string,
    which holds the participant's id: erasing a participant must not leave them in a proxy's log."""
    servers = "\n".join(f"    server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
    static = f"""
    # The page's scripts and styles, from the installed Streamlit (their names carry a hash of their contents).
    location /static/ {{
        alias {streamlit_static}/static/;
        include /etc/nginx/mime.types;
        add_header Cache-Control "public, max-age=31536000, immutable";
        {HSTS}
        access_log off;
    }}
""" if streamlit_static else ""
    redirect = f"""
server {{
    listen {http_port};
    server_name {host};
    location / {{ return 301 https://$host$request_uri; }}
}}
""" if http_port else ""
    proxied = """        proxy_pass http://camstudy_workers;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $camstudy_connection;"""
    return f"""# Written by `camstudy deploy`: the survey at https://{host}/ on {len(upstreams)} worker(s).
# http-level: put this file in /etc/nginx/conf.d/, or run nginx with the nginx.conf beside it.

# A websocket upgrade is passed on; other requests keep the connection to the worker open (keepalive).
map $http_upgrade $camstudy_connection {{
    default upgrade;
    ''      '';
}}

# Sticky sessions: a browser without a route cookie gets a random one (this request's id) with the first
# response; every later request of that browser (the page, its websocket, reconnects) carries it, and the
# worker is chosen by a consistent hash of it. A worker that is down is skipped for the next on the ring.
map $cookie_{ROUTE_COOKIE} $camstudy_route {{
    ""      $request_id;
    default $cookie_{ROUTE_COOKIE};
}}

# Which worker served a request, and for which route cookie; no client address, no query string (ids).
log_format camstudy '[$time_local] "$request_method $uri" $status $body_bytes_sent route=$camstudy_route '
                    'upstream=$upstream_addr $request_time';

upstream camstudy_workers {{
    hash $camstudy_route consistent;
{servers}
    keepalive 32;
}}
{redirect}
server {{
    listen {https_port} ssl;
    server_name {host};
    ssl_certificate     {certificate};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:camstudy_tls:10m;
    {HSTS}
    client_max_body_size 1m;
    server_tokens off;
    access_log {access_log} camstudy;

    # The stimuli: static files with content-hash names, served here without a worker, cached for a year.
    location /stimuli/ {{
        alias {str(stimuli).rstrip("/")}/;
        types {{ image/jpeg jpg; }}
        default_type application/octet-stream;
        add_header Cache-Control "public, max-age=31536000, immutable";
        {HSTS}
        access_log off;
    }}

{static}
    # Streamlit's websocket: one long-lived connection per browser tab.
    location /_stcore/stream {{
{proxied}
        proxy_read_timeout 1d;
        proxy_send_timeout 1d;
    }}

    location / {{
{proxied}
        add_header Set-Cookie "{ROUTE_COOKIE}=$camstudy_route; Path=/; Max-Age=86400; HttpOnly; Secure; SameSite=Lax";
        {HSTS}
    }}
}}
"""


def nginx_main(site: str = "camstudy.conf") -> str:
    """A complete nginx configuration around `site`, for `nginx -p DIR -c nginx.conf` (pid, logs and
    temporary files under DIR/run, so that it needs nothing of the system's nginx setup)."""
    return f"""# Written by `camstudy deploy`. Run: nginx -p "$PWD" -c nginx.conf  (from this folder; -s stop to stop)
worker_processes auto;
pid run/nginx.pid;
error_log run/error.log warn;
events {{ worker_connections 4096; }}
http {{
    include {site};
    client_body_temp_path run/client_body;
    proxy_temp_path run/proxy;
    fastcgi_temp_path run/fastcgi;
    uwsgi_temp_path run/uwsgi;
    scgi_temp_path run/scgi;
    sendfile on;
}}
"""


def compose(*, workers: int, study_dir: Path, sqlite: bool) -> str:
    """compose.yaml: PostgreSQL (unless the study is on SQLite), the workers, and nginx in front."""
    database = "" if sqlite else """
  db:
    image: postgres:15
    environment:
      POSTGRES_USER: camstudy
      POSTGRES_DB: camstudy
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}
    volumes: [db:/var/lib/postgresql/data]
    ports: ["127.0.0.1:5432:5432"]    # for `camstudy build` on this machine; not reachable from outside
    restart: unless-stopped
    networks: [camstudy]
"""
    survey_env = """
    environment:
      CAMSTUDY_ADMIN_PASSWORD: ${CAMSTUDY_ADMIN_PASSWORD:?set CAMSTUDY_ADMIN_PASSWORD in .env}""" + ("" if sqlite else """
      CAMSTUDY_DATABASE_URL: postgresql+psycopg://camstudy:${POSTGRES_PASSWORD}@db/camstudy
    depends_on: [db]""")
    return f"""# Written by `camstudy deploy`: the survey of {study_dir} behind nginx, with Docker Compose.
# Put POSTGRES_PASSWORD and CAMSTUDY_ADMIN_PASSWORD into .env beside this file, the certificate into
# certs/ (fullchain.pem, privkey.pem) and the camstudy wheel beside the Dockerfile; see README.md.
services:{database}
  survey:
    build: .
    command: ["camstudy", "serve", "/study", "--workers", "{workers}", "--host", "0.0.0.0", "--port", "{COMPOSE_PORT}",
              "--trusted-proxies", "{COMPOSE_SUBNET}"]{survey_env}
    volumes: ["{study_dir}:/study"]
    restart: unless-stopped
    networks: [camstudy]

  proxy:
    image: nginx:1.27
    ports: ["80:80", "443:443"]
    volumes:
      - ./compose/camstudy.conf:/etc/nginx/conf.d/default.conf:ro
      - ./certs:/etc/nginx/certs:ro
      - {study_dir}/public:/srv/stimuli:ro
    depends_on: [survey]
    restart: unless-stopped
    networks: [camstudy]

networks:
  camstudy:
    ipam:
      config: [{{subnet: {COMPOSE_SUBNET}}}]
{"" if sqlite else chr(10) + "volumes:" + chr(10) + "  db:" + chr(10)}"""


DOCKERFILE = """# Written by `camstudy deploy`: the survey's image. Put the camstudy wheel beside this file first:
#   pip wheel --no-deps -w . /path/to/camstudy      (from a checkout)
FROM python:3.11-slim
COPY camstudy-*.whl /tmp/
RUN pip install --no-cache-dir "$(ls /tmp/camstudy-*.whl)[postgres]" && rm /tmp/camstudy-*.whl
EXPOSE 8501
"""


def readme(*, host: str, workers: int, study_dir: Path, out: Path, port: int, sqlite: bool) -> str:
    ports = f"{port}-{port + workers - 1}" if workers > 1 else str(port)
    return f"""# Serving {study_dir.name} at https://{host}/

Written by `camstudy deploy`. {workers} worker process(es) of `camstudy serve` behind nginx, which
terminates HTTPS, keeps each browser on one worker (a route cookie), and serves the stimuli itself.

## On this machine (Debian/Ubuntu)

1. A certificate for {host}: `apt install nginx certbot && certbot certonly --webroot -w /var/www/html -d {host}`
   (or `--certificate`/`--key` of `camstudy deploy` for one you have).
2. The workers, as a service (systemd, tmux, ...), with the admin password in their environment:

       CAMSTUDY_ADMIN_PASSWORD=... camstudy serve {study_dir} --workers {workers} --port {port}

   They listen on 127.0.0.1:{ports}; only nginx talks to them.
3. nginx: `cp {out}/camstudy.conf /etc/nginx/conf.d/ && nginx -t && systemctl reload nginx`
   (or, without the system's nginx: `cd {out} && nginx -p "$PWD" -c nginx.conf`).
   nginx's user must be able to read {study_dir}/public/ (the published stimuli; `camstudy serve` and
   `camstudy deploy` write them there): the study folder needs o+x, nothing more. The database and the
   exports stay readable by their owner only.

## With Docker Compose

1. `.env` beside compose.yaml with `POSTGRES_PASSWORD=...` and `CAMSTUDY_ADMIN_PASSWORD=...`; the certificate
   as certs/fullchain.pem and certs/privkey.pem; the camstudy wheel beside the Dockerfile.
2. {"Build the study on this machine (SQLite, in the study folder)." if sqlite else
   "`docker compose up -d db`, then build the study into it from this machine: its config's `database_url` is "
   "`postgresql+psycopg://camstudy:PASSWORD@localhost:5432/camstudy` (inside the containers the same database is "
   "reached as `db`: compose sets CAMSTUDY_DATABASE_URL)."}
3. `docker compose up -d`. Participants open https://{host}/?PROLIFIC_PID=...; the admin page is /admin.

## Checks

- `curl -I https://{host}/stimuli/<a name from {study_dir}/public/>` answers 200 with a one-year Cache-Control.
- A worker stopped (`kill` one): its participants' pages reconnect to another one and continue.
"""


def run(args) -> int:
    import streamlit

    from study.survey.session import SurveySession

    study_dir = args.study_dir.resolve()
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    session = SurveySession(study_dir)
    sqlite = session.db.engine.dialect.name == "sqlite"
    if sqlite and args.workers > 1:
        raise ValueError(f"--workers {args.workers} needs a database server: this study's database is SQLite. Set "
                         "database_url to a PostgreSQL URL in the study's config and build it there, or use --workers 1")
    n = session.stimuli.publish(session.built.stimulus_path(i) for i in session.built.stimuli)
    out = args.out.resolve()
    (out / "compose").mkdir(parents=True, exist_ok=True)
    (out / "run").mkdir(exist_ok=True)
    certificate = args.certificate or Path(f"/etc/letsencrypt/live/{args.host}/fullchain.pem")
    key = args.key or certificate.with_name("privkey.pem")
    upstreams = [f"127.0.0.1:{p}" for p in range(args.port, args.port + args.workers)]
    (out / "camstudy.conf").write_text(nginx_site(
        host=args.host, upstreams=upstreams, stimuli=session.stimuli.folder, certificate=certificate.resolve(),
        key=key.resolve(), access_log=out / "run" / "access.log", https_port=args.https_port,
        http_port=args.http_port, streamlit_static=Path(streamlit.__file__).parent / "static"))
    (out / "nginx.conf").write_text(nginx_main())
    (out / "compose" / "camstudy.conf").write_text(nginx_site(
        host=args.host, upstreams=[f"survey:{p}" for p in range(COMPOSE_PORT, COMPOSE_PORT + args.workers)],
        stimuli="/srv/stimuli", certificate="/etc/nginx/certs/fullchain.pem", key="/etc/nginx/certs/privkey.pem",
        access_log="/var/log/nginx/access.log"))
    (out / "compose.yaml").write_text(compose(workers=args.workers, study_dir=study_dir, sqlite=sqlite))
    (out / "Dockerfile").write_text(DOCKERFILE)
    (out / "README.md").write_text(readme(host=args.host, workers=args.workers, study_dir=study_dir, out=out,
                                          port=args.port, sqlite=sqlite))
    check = shutil.which("nginx")
    print(f"wrote {out}/camstudy.conf, nginx.conf, compose.yaml, Dockerfile and README.md for https://{args.host}/ "
          f"on {args.workers} worker(s); published {n} stimuli to {session.stimuli.folder}"
          + ("" if check else " (nginx is not installed here: `apt install nginx`)"))
    return 0
