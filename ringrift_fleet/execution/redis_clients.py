"""Every Redis client the fleet makes, built in one place from :class:`P2PConfig`.

The broker is either one Redis at ``BROKER_URL`` (the default, and what
``ringrift-fleet up`` embeds) or a **Sentinel set** (``RINGRIFT_BROKER_SENTINELS``,
``RINGRIFT_BROKER_MASTER_NAME``, ``RINGRIFT_BROKER_PASSWORD``,
``RINGRIFT_BROKER_SENTINEL_PASSWORD``): Redis replication with Redis Sentinel
choosing the primary.  No failover logic lives here; it is Sentinel's.  What lives
here is how each client finds the current primary:

* :func:`redis_client` — the coordinator's and the worker's own client (fences,
  slots, run leases, metrics board, notifications).  In Sentinel mode it is
  redis-py's ``Sentinel(...).master_for(name)``: every new connection asks the
  Sentinels for the primary, a connection to a demoted primary fails
  (``ReadOnlyError`` is turned into a connection error by redis-py), and the next
  command reconnects to the new one.
* :func:`celery_broker_settings` — Celery's broker and result backend: kombu's
  ``sentinel://`` transport and Celery's ``SentinelBackend``, with ``master_name``
  and ``sentinel_kwargs`` (the Sentinels' password) in the transport options.
  Flower is ``celery -A ringrift_fleet flower``, so it reads the same settings.
* :class:`ReplicaWait` — ``WAIT 1 <ms>`` after a fence or slot write when the
  primary has replicas: an acknowledged fence is then on a replica too, so a
  failover does not forget it (docs/deploy.md, "Fences across a failover").
* :func:`topology` and :class:`FailoverWatch` — the Sentinels' view for
  ``/status`` and ``ringrift-fleet status``, and the ``broker_failover`` event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import redis
from redis.sentinel import Sentinel

from ringrift_fleet.config import P2PConfig, parse_sentinels
from ringrift_fleet.execution.broker import BROKER_ERRORS, mask_url
from ringrift_fleet.execution.fencing import notified_key

log = logging.getLogger(__name__)

SENTINEL_TIMEOUT_S = 1.0  # per Sentinel asked; a dead one must not stall a tick
REPLICA_CHECK_EVERY_S = 2.0  # how long ReplicaWait trusts its replica count


@dataclass(frozen=True)
class BrokerSpec:
    """Where the broker is: one URL, or a Sentinel set and the name of its primary."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    password: str = ""
    sentinel_password: str = ""
    db: int = 0

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """For logs and /status: no secrets."""
        if not self.sentinel:
            return mask_url(self.url)
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel {self.master_name} via {hosts}"


def broker_spec(cfg: P2PConfig) -> BrokerSpec:
    """The broker ``cfg`` names (pure; the config was validated when it was built)."""
    sentinels = tuple(parse_sentinels(cfg.BROKER_SENTINELS))
    if sentinels:
        return BrokerSpec(
            url="",
            sentinels=sentinels,
            master_name=cfg.BROKER_MASTER_NAME,
            password=cfg.BROKER_PASSWORD,
            sentinel_password=cfg.BROKER_SENTINEL_PASSWORD,
        )
    return BrokerSpec(url=_with_password(cfg.BROKER_URL, cfg.BROKER_PASSWORD))


def _with_password(url: str, password: str) -> str:
    """``BROKER_PASSWORD`` added to a URL that carries none (a URL's own one wins)."""
    if not password:
        return url
    parts = urlsplit(url)
    if parts.password or parts.scheme == "unix":
        return url
    return parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}").geturl()


def _sentinel_kwargs(spec: BrokerSpec, timeout: float) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "socket_timeout": min(timeout, SENTINEL_TIMEOUT_S),
        "socket_connect_timeout": min(timeout, SENTINEL_TIMEOUT_S),
    }
    if spec.sentinel_password:
        kw["password"] = spec.sentinel_password
    return kw


def sentinel_for(cfg: P2PConfig | BrokerSpec, *, timeout: float = 5.0) -> Sentinel:
    """redis-py's Sentinel client for the configured set."""
    spec = cfg if isinstance(cfg, BrokerSpec) else broker_spec(cfg)
    conn: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if spec.password:
        conn["password"] = spec.password
    return Sentinel(
        list(spec.sentinels),
        sentinel_kwargs=_sentinel_kwargs(spec, timeout),
        **conn,
    )


def redis_client(
    cfg: P2PConfig | BrokerSpec,
    *,
    timeout: float = 5.0,
    connect_timeout: float | None = None,
) -> redis.Redis:
    """A client of the broker's current primary (the one way the fleet makes one)."""
    spec = cfg if isinstance(cfg, BrokerSpec) else broker_spec(cfg)
    connect = timeout if connect_timeout is None else connect_timeout
    if not spec.sentinel:
        return redis.Redis.from_url(
            spec.url, socket_timeout=timeout, socket_connect_timeout=connect
        )
    return sentinel_for(spec, timeout=timeout).master_for(
        spec.master_name,
        socket_timeout=timeout,
        socket_connect_timeout=connect,
        db=spec.db,
    )


def sentinel_url(spec: BrokerSpec) -> str:
    """kombu's and Celery's form: ``sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0``."""
    auth = f":{quote(spec.password, safe='')}@" if spec.password else ""
    return ";".join(
        f"sentinel://{auth}{f'[{h}]' if ':' in h else h}:{p}/{spec.db}" for h, p in spec.sentinels
    )


def celery_broker_settings(cfg: P2PConfig) -> dict[str, Any]:
    """``broker_url``, ``result_backend`` and the Sentinel transport options (pure).

    Merged into the visibility-timeout options by ``execution.settings``."""
    spec = broker_spec(cfg)
    if not spec.sentinel:
        backend = cfg.RESULT_BACKEND or spec.url
        return {
            "broker_url": spec.url,
            "result_backend": backend,
            "broker_transport_options": {},
            "result_backend_transport_options": {},
        }
    url = sentinel_url(spec)
    options: dict[str, Any] = {"master_name": spec.master_name}
    if spec.sentinel_password:
        options["sentinel_kwargs"] = {"password": spec.sentinel_password}
    return {
        "broker_url": url,
        # A separate RESULT_BACKEND is taken as given; "" means the same Sentinel set.
        "result_backend": cfg.RESULT_BACKEND or url,
        "broker_transport_options": dict(options),
        "result_backend_transport_options": {} if cfg.RESULT_BACKEND else dict(options),
    }


def _pairs(reply: Any) -> dict[str, Any]:
    """A Sentinel reply as a dict of text, whether redis-py parsed it or not."""
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    items = [x.decode() if isinstance(x, bytes) else x for x in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def topology(cfg: P2PConfig | BrokerSpec, sentinel: Sentinel | None = None) -> dict[str, Any]:
    """What the broker looks like now: mode, primary, replicas and each Sentinel's view.

    Single-Redis mode answers without I/O.  Each Sentinel is asked with a short
    timeout; one that does not answer is listed as such, never raised."""
    spec = cfg if isinstance(cfg, BrokerSpec) else broker_spec(cfg)
    if not spec.sentinel:
        return {"mode": "single", "url": mask_url(spec.url)}
    s = sentinel or sentinel_for(spec, timeout=SENTINEL_TIMEOUT_S)
    views: list[dict[str, Any]] = []
    primary_votes: dict[str, int] = {}
    replicas: list[dict[str, Any]] = []
    epoch: int | None = None
    for (host, port), client in zip(spec.sentinels, s.sentinels, strict=True):
        view: dict[str, Any] = {"sentinel": f"{host}:{port}"}
        try:
            # execute_command, not redis-py 6.4's sentinel_master()/sentinel_slaves()
            # helpers: their reply parsers reject the options those helpers pass.
            master = _pairs(client.execute_command("SENTINEL MASTER", spec.master_name))
            primary = f"{master['ip']}:{master['port']}"
            view.update(
                up=True,
                primary=primary,
                flags=master.get("flags", ""),
                epoch=int(master.get("config-epoch", 0)),
                quorum=int(master.get("quorum", 0)),
                other_sentinels=int(master.get("num-other-sentinels", 0)),
            )
            primary_votes[primary] = primary_votes.get(primary, 0) + 1
            if epoch is None or view["epoch"] > epoch:
                epoch = view["epoch"]
                replicas = [
                    {
                        "addr": f"{r['ip']}:{r['port']}",
                        "flags": r.get("flags", ""),
                        "link": r.get("master-link-status", ""),
                        "offset": int(r.get("slave-repl-offset", 0)),
                    }
                    for r in map(
                        _pairs, client.execute_command("SENTINEL REPLICAS", spec.master_name)
                    )
                ]
        except BROKER_ERRORS as exc:
            view.update(up=False, error=f"{type(exc).__name__}: {exc}")
        views.append(view)
        if sentinel is None:
            client.close()
    agreed = max(primary_votes, key=lambda k: primary_votes[k]) if primary_votes else None
    # The primary a majority of the configured Sentinels name (None without one): one
    # Sentinel that has not yet heard of a failover must not hide it.
    majority = agreed if agreed and primary_votes[agreed] * 2 > len(views) else None
    return {
        "mode": "sentinel",
        "master_name": spec.master_name,
        "primary": agreed,
        "majority": majority,
        "epoch": epoch,
        "agree": len(primary_votes) <= 1,
        "replicas": replicas,
        "sentinels": views,
        "sentinels_up": sum(1 for v in views if v.get("up")),
    }


class ReplicaWait:
    """``WAIT 1 <ms>`` after a fence or slot write, when the primary has replicas.

    Asynchronous replication may lose an acknowledged write in a failover; once
    ``WAIT`` returns 1 the write is on a replica, and Sentinel promotes the most
    up-to-date one.  With no replica connected ``WAIT`` would only burn its timeout,
    so the replica count (``INFO replication``) is re-read every couple of seconds
    and the wait skipped while it is 0.  Never raises: the ledger (Raft) is the
    final authority on which attempt is live, this only narrows the window."""

    def __init__(
        self,
        client: Any,
        timeout_s: float,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.timeout_ms = client, max(1, int(timeout_s * 1000))
        self.enabled, self.clock = enabled, clock
        self._replicas, self._checked = 0, float("-inf")
        self.waits = self.unconfirmed = 0

    def __call__(self) -> bool:
        """True when the writes so far reached a replica (or there is none to reach)."""
        if not self.enabled:
            return True
        try:
            now = self.clock()
            if now - self._checked >= REPLICA_CHECK_EVERY_S:
                info = self.client.info("replication")
                self._replicas = int(info.get("connected_slaves", 0))
                self._checked = now
            if self._replicas == 0:
                return True
            self.waits += 1
            if int(self.client.wait(1, self.timeout_ms)) >= 1:
                return True
        except BROKER_ERRORS as exc:
            log.debug("WAIT after a fence write failed: %s", exc)
        self.unconfirmed += 1
        self._checked = float("-inf")  # a replica may have gone: look again next time
        return False


def replica_wait(cfg: P2PConfig, client: Any) -> ReplicaWait:
    """The wait for ``client`` (on only with a Sentinel set: a single Redis has none)."""
    return ReplicaWait(client, cfg.BROKER_WAIT_TIMEOUT, enabled=broker_spec(cfg).sentinel)


class FailoverWatch:
    """Notices the Sentinels naming a new primary: one log line and one
    ``broker_failover`` event per failover (deduplicated across coordinators by a
    ``SET NX`` on the new primary), and the last topology for /status."""

    def __init__(
        self,
        cfg: P2PConfig,
        *,
        notify: Callable[..., Any] | None = None,
        client: Any = None,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = broker_spec(cfg)
        self.notify, self.every_s, self.clock = notify, every_s, clock
        self.client = client
        self.last: dict[str, Any] = {}
        self.primary: str | None = None
        self.epoch: int | None = None
        self.failovers: list[dict[str, Any]] = []
        self._at = float("-inf")
        self._sentinel: Sentinel | None = None

    def poll(self) -> dict[str, Any] | None:
        """Look (at most every ``every_s``); returns the failover event when one happened."""
        if not self.spec.sentinel:
            return None
        now = self.clock()
        if now - self._at < self.every_s:
            return None
        self._at = now
        if self._sentinel is None:
            self._sentinel = sentinel_for(self.spec, timeout=SENTINEL_TIMEOUT_S)
        view = topology(self.spec, self._sentinel)
        self.last = view
        primary, epoch = view.get("majority"), view.get("epoch")
        if primary is None:
            return None
        old = self.primary
        self.primary, self.epoch = primary, epoch
        if old is None or old == primary:
            return None
        event = {"from": old, "to": primary, "epoch": epoch, "at": time.time()}
        self.failovers = [*self.failovers[-9:], event]
        log.warning(
            "broker failover: Sentinel %s moved the primary from %s to %s (epoch %s)",
            self.spec.master_name,
            old,
            primary,
            epoch,
        )
        if self.notify is not None and self._first_to_report(epoch, primary):
            self.notify(
                event_type="broker_failover",
                title="Broker failover",
                message=f"Redis primary moved from {old} to {primary} (Sentinel epoch {epoch})",
                severity="warning",
                details=event,
            )
        return event

    def _first_to_report(self, epoch: Any, primary: str) -> bool:
        if self.client is None:
            return True
        try:
            key = notified_key(f"broker_failover:{epoch}:{primary}")
            return bool(self.client.set(key, "1", nx=True, ex=7 * 86400))
        except BROKER_ERRORS:
            return True  # better a duplicate event than none

    def status(self) -> dict[str, Any]:
        if not self.spec.sentinel:
            return {"mode": "single"}
        return {**self.last, "failovers": list(self.failovers)}


def topology_rows(topo: Any) -> list[tuple[str, str]]:
    """``ringrift-fleet status`` rows for the broker's Sentinel view (pure; [] for a
    single Redis): the primary, the replicas with their link, what each Sentinel
    says, and the last failover."""
    if not isinstance(topo, dict) or topo.get("mode") != "sentinel":
        return []
    agree = "" if topo.get("agree", True) else " (Sentinels disagree!)"
    rows = [
        (
            "broker primary",
            f"{topo.get('primary') or '(none)'} "
            f"[{topo.get('master_name', '?')}, epoch {topo.get('epoch')}]{agree}",
        ),
        (
            "broker replicas",
            ", ".join(
                f"{r.get('addr')} ({r.get('link') or r.get('flags')})"
                for r in topo.get("replicas") or []
            )
            or "(none)",
        ),
    ]
    views = topo.get("sentinels") or []
    parts = [
        f"{v.get('sentinel')} {'-> ' + str(v.get('primary')) if v.get('up') else 'DOWN'}"
        for v in views
    ]
    rows.append(("sentinels", f"{topo.get('sentinels_up', 0)}/{len(views)} up: {', '.join(parts)}"))
    failovers = topo.get("failovers") or []
    if failovers:
        last = failovers[-1]
        rows.append(
            ("last failover", f"{last.get('from')} -> {last.get('to')} (epoch {last.get('epoch')})")
        )
    return rows
