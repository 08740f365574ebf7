"""Many participants on more than one process: `camstudy serve --workers N`, `camstudy deploy`, and two
workers on PostgreSQL behind Debian's nginx with real browsers (HTTPS, sticky websockets, stimuli served
by nginx, a worker killed mid-study)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from urllib.parse import urlparse

import pytest

from _ui_fixtures import (CHROMIUM_ARGS, TRIAL, Proxy, Server, after_submit, answer, build_study_folder,
                          chromium_path, drop_postgres_database, fresh_postgres_database, question, settle, take_part)
from study.cli import main

POSTGRES = os.environ.get("CAMSTUDY_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory):
    return build_study_folder(tmp_path_factory.mktemp("deploy") / "study")


def test_several_workers_on_sqlite_are_refused_with_a_clear_error(sqlite_study, capsys):
    assert main(["serve", str(sqlite_study), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--workers 2 needs a database server" in err and "SQLite" in err
    assert main(["deploy", str(sqlite_study), "--host", "study.example.org", "--workers", "2",
                 "--out", str(sqlite_study.parent / "nope")]) == 2


def test_deploy_writes_nginx_and_compose_for_the_study(sqlite_study, tmp_path):
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "deploy"
    assert main(["deploy", str(sqlite_study), "--host", "study.example.org", "--workers", "1", "--out", str(out)]) == 0
    site = (out / "camstudy.conf").read_text()
    assert "server_name study.example.org;" in site and "listen 443 ssl;" in site
    assert "/etc/letsencrypt/live/study.example.org/fullchain.pem" in site
    assert f"alias {sqlite_study / 'public'}/;" in site                       # nginx serves the stimuli
    assert "hash $camstudy_route consistent;" in site and "proxy_set_header Upgrade $http_upgrade;" in site
    assert "return 301 https://" in site
    assert len(list((sqlite_study / "public").glob("*.jpg"))) > 10             # published before any worker runs
    services = yaml.safe_load((out / "compose.yaml").read_text())["services"]
    assert set(services) == {"survey", "proxy"}                              # SQLite: no database service
    assert services["survey"]["command"][:3] == ["camstudy", "serve", "/study"]
    compose_site = (out / "compose" / "camstudy.conf").read_text()
    assert "server survey:8501" in compose_site and "alias /srv/stimuli/;" in compose_site
    if shutil.which("nginx"):                                                 # the configuration is valid nginx
        certificate = tmp_path / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x",
                        "-keyout", str(tmp_path / "key.pem"), "-out", str(certificate)], check=True, capture_output=True)
        main(["deploy", str(sqlite_study), "--host", "x", "--workers", "1", "--out", str(out), "--https-port", "8443",
              "--http-port", "0", "--certificate", str(certificate), "--key", str(tmp_path / "key.pem")])
        checked = subprocess.run(["nginx", "-t", "-p", str(out), "-c", "nginx.conf"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_deploy_for_postgresql_adds_the_database_service(tmp_path):
    yaml = pytest.importorskip("yaml")
    if not POSTGRES:
        pytest.skip("set CAMSTUDY_TEST_POSTGRES_URL to test on PostgreSQL")
    url = fresh_postgres_database(POSTGRES, "camstudy_test_deploy")
    try:
        study = build_study_folder(tmp_path / "study", database_url=url)
        assert main(["deploy", str(study), "--host", "h", "--workers", "3", "--out", str(tmp_path / "d")]) == 0
        compose = yaml.safe_load((tmp_path / "d" / "compose.yaml").read_text())
        assert set(compose["services"]) == {"db", "survey", "proxy"}
        assert "CAMSTUDY_DATABASE_URL" in compose["services"]["survey"]["environment"]
        assert (tmp_path / "d" / "camstudy.conf").read_text().count("max_fails=1") == 3
    finally:
        from study.store import database
        database._open.clear()
        drop_postgres_database(POSTGRES, "camstudy_test_deploy")


needs_the_stack = pytest.mark.skipif(
    not (POSTGRES and chromium_path() and shutil.which("nginx") and shutil.which("openssl")),
    reason="needs CAMSTUDY_TEST_POSTGRES_URL, Debian's chromium, nginx and openssl (.ci/run installs them)")


@pytest.mark.browser
@needs_the_stack
def test_two_workers_behind_nginx_lose_nothing_duplicate_nothing_and_miss_no_image(tmp_path):
    """Two participants through nginx (HTTPS, configured as `camstudy deploy` writes it) to two workers on
    PostgreSQL. The worker the first one is on
    is killed mid-study: their page reconnects through nginx to the other worker and finishes there.
    Every answer is stored once, every stimulus loads (from nginx), and no request leaves the proxy."""
    from playwright.sync_api import sync_playwright
    from study.results.export import export_tables

    url = fresh_postgres_database(POSTGRES, "camstudy_test_nginx")
    study = build_study_folder(tmp_path / "study", database_url=url)
    server = Server(study, workers=2).start()
    proxy = Proxy(tmp_path / "proxy", study, [server.port, server.port + 1]).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            pages, problems, hosts, without_hsts = [], [], set(), []
            for _ in range(2):
                context = browser.new_context(ignore_https_errors=True)
                context.set_default_timeout(60_000)
                page = context.new_page()
                page.on("response", lambda r: problems.append((r.status, r.url)) if r.status >= 400 else None)
                page.on("requestfailed", lambda r: problems.append(("failed", r.url)))
                page.on("response", lambda r: without_hsts.append(r.url) if r.url.startswith("https:")
                        and "strict-transport-security" not in r.headers else None)
                page.on("request", lambda r: hosts.add(urlparse(r.url).netloc) if r.url.startswith(("http", "ws")) else None)
                pages.append(page)
            first, second = pages
            assert take_part(first, proxy.url, "P-nginx-1", stop_after=4) == 4
            assert take_part(second, proxy.url, "P-nginx-2", stop_after=3) == 3

            # The first participant's worker, from nginx's log of their requests (all to one worker); killed.
            route = next(c["value"] for c in first.context.cookies() if c["name"] == "camstudy_route")
            logged = [line for line in proxy.access_log() if f"route={route}" in line]
            ports = {int(p) for p in re.findall(r"upstream=127\.0\.0\.1:(\d+)", "\n".join(logged))}
            assert len(ports) == 1, logged                   # sticky: one worker for everything of this browser
            port = ports.pop()
            seen = len(logged)
            os.kill(server.worker_pids()[port], signal.SIGKILL)
            app = '[data-testid="stApp"]'
            first.locator(f'{app}:not([data-test-connection-state="CONNECTED"])').wait_for()   # the page notices ...
            first.locator(f'{app}[data-test-connection-state="CONNECTED"]').wait_for()         # ... and reconnects
            first.get_by_text(question(5)).wait_for()          # on the other worker, where it stopped
            settle(first)
            n = 5
            while not first.get_by_role("button", name="Finish").is_visible():
                answer(first, n)
                # An answer sent while the page was still joining the other worker does not get through: the
                # page says so after a few seconds and the participant presses Next again, as it asks.
                resend = first.get_by_text("Your answer has not reached us yet")
                after_submit(first, n).or_(resend).first.wait_for()
                if resend.is_visible():
                    first.locator(TRIAL).get_by_role("button", name="Next").click()
                    after_submit(first, n).wait_for()
                settle(first)
                if first.get_by_role("button", name="Continue").is_visible():
                    first.get_by_role("button", name="Continue").click()
                    first.get_by_text(question(n + 1)).or_(first.get_by_role("button", name="Finish")).first.wait_for()
                    settle(first)
                n += 1
            first.get_by_role("button", name="Finish").click()
            first.get_by_text("Your completion code").wait_for()
            first.context.close()                              # its websocket is logged once it closes
            deadline = time.monotonic() + 10
            while not (streams := [line for line in proxy.access_log()[seen:]
                                   if f"route={route}" in line and '"GET /_stcore/stream" 101' in line][1:]):
                assert time.monotonic() < deadline, proxy.access_log()[seen:]
                time.sleep(0.2)
            # The first was cut by the kill; the page then ran on through nginx, on the other worker or on its
            # own once `serve` had restarted it (whichever the proxy reached first).
            stimuli = [line for line in proxy.access_log() if "/stimuli/" in line]
            browser.close()
        responses = export_tables(study, n_resamples=10)["responses"]
        per_person = responses.groupby("external_id")["trial_index"].apply(list).to_dict()
        assert per_person == {"P-nginx-1": list(range(20)), "P-nginx-2": [0, 1, 2]}   # nothing lost, nothing twice
        assert problems == []                                       # not one missing image, no failed request
        assert stimuli == []                                        # served by nginx (its own location, unlogged)
        assert hosts == {urlparse(proxy.url).netloc}                # nothing but the proxy
        assert without_hsts == []                                   # every response keeps the browser on HTTPS
        log = proxy.access_log()                                    # and erasure leaves nobody in the proxy's log:
        assert log and not any("P-nginx" in line or "PROLIFIC_PID" in line or "127.0.0.1 [" in line for line in log)
        assert responses["rt_ms"].between(0, 60_000).all() and responses["server_rt_ms"].notna().all()
    finally:
        proxy.stop()
        server.stop()
        from study.store import database
        database._open.clear()
        drop_postgres_database(POSTGRES, "camstudy_test_nginx")
