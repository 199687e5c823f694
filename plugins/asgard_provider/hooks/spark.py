"""Hook for Spark sessions wired to the shared Iceberg catalog."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from asgard_provider.catalog import ICEBERG_EXTENSIONS, CatalogSettings
from asgard_provider.exceptions import CatalogError, TransformError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
#: Comma-separated jar paths; when set, replaces jar discovery entirely.
JARS_ENV = "ASGARD_SPARK_JARS"
#: Seconds between progress lines while a local Spark job runs (a long task never goes quiet in its log).
PROGRESS_EVERY_S = 30.0
#: Folders searched for JDBC driver jars (Debian/Ubuntu packages install them in /usr/share/java).
JDBC_JAR_DIRS = (Path("/usr/share/java"), Path("/usr/local/share/java"))
_JDBC_JARS = {
    "sqlite": ("sqlite-jdbc.jar", "xerial-sqlite-jdbc.jar", "sqlite-jdbc-*.jar", "xerial-sqlite-jdbc-*.jar"),
    "postgresql": ("postgresql.jar", "postgresql-*.jar"),
}
# Debian's sqlite-jdbc ships its native library separately (libxerial-sqlite-jdbc-jni).
_NATIVE_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu/jni"), Path("/usr/lib/aarch64-linux-gnu/jni"), Path("/usr/lib/jni"))

# Defaults for a small local session; a connection's extra "conf" overrides any of them.
_DEFAULT_CONF = {
    "spark.app.name": "asgard",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
}
_LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
#: JVM flags of a local-mode driver: the serial collector (one short-lived JVM per task process, on few cores).
#: The client compiler alone (``-XX:TieredStopAtLevel=1``) started sessions sooner only under heavy load; on a
#: quiet machine it made the queries slower (seed-scale Silver transactions: first run 15.5 s -> 12.6 s, later
#: runs 10.5 s -> 5.0 s with the JIT's full tiers, session start 3.9 s against 4.2 s).
_LOCAL_JAVA_OPTS = ("-XX:+UseSerialGC",)
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.metrics.name = org.apache.hadoop.metrics2
logger.metrics.level = error
"""
_MAX_CATALOG_SESSIONS = 8

# One JVM per process: the root session is started once and each catalog gets a child session
# (``newSession``) sharing its SparkContext, so dag.test() and test suites start Spark only once.
_lock = threading.Lock()
_root: SparkSession | None = None
_root_conf: dict[str, str] = {}
_sessions: OrderedDict[tuple[tuple[str, str], ...], SparkSession] = OrderedDict()


class SparkHook(BaseHook):
    """Build Spark sessions that see the shared Iceberg catalog as ``iceberg``.

    Connection fields (type ``asgard_spark``): ``host`` is the Spark master (``local[4]``,
    ``spark://host`` with ``port``), extra ``{"conf": {"spark.executor.memory": "4g", ...}}`` adds or
    overrides Spark settings. When the default connection is not defined, a ``local[2]`` session is used.
    Jars (Iceberg Spark runtime, JDBC drivers) are found automatically; ``$ASGARD_SPARK_JARS``
    (comma-separated paths) replaces the discovered list.
    """

    conn_name_attr = "spark_conn_id"
    default_conn_name = "asgard_spark_default"
    conn_type = "asgard_spark"
    hook_name = "Spark (Asgard)"

    def __init__(self, spark_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.spark_conn_id = spark_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the generic connection form for a Spark master."""
        from asgard_provider.connections import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    @cached_property
    def connection_settings(self) -> tuple[str, dict[str, str]]:
        """Return the master URL and the extra Spark conf of the connection (or the embedded default)."""
        try:
            conn = self.get_connection(self.spark_conn_id)
        except Exception as exc:
            if self.spark_conn_id == self.default_conn_name:
                return DEFAULT_MASTER, {}
            raise TransformError(f"Airflow connection {self.spark_conn_id!r} is not defined") from exc
        extra = conn.extra_dejson
        conf = extra.get("conf") or {}
        if not isinstance(conf, dict):
            raise TransformError(f"connection {self.spark_conn_id!r}: extra 'conf' must be an object of settings")
        master = extra.get("master") or conn.host or DEFAULT_MASTER
        if conn.port and "://" in master and master.count(":") < 2:
            master = f"{master}:{conn.port}"
        return str(master), {str(k): str(v) for k, v in conf.items()}

    def session_conf(self, catalog: CatalogSettings) -> dict[str, str]:
        """Return the process-wide session's static settings: master, jars, Iceberg extensions, defaults."""
        master, extra = self.connection_settings
        conf = {"spark.master": master, **_DEFAULT_CONF}
        if master.startswith("local"):
            conf.update(_LOCAL_CONF)
        jars = find_jars(catalog)
        conf["spark.jars"] = ",".join(jars)
        java_opts = [f"-Dlog4j2.configurationFile={_log4j2_file().as_uri()}"]
        if master.startswith("local"):
            java_opts.extend(_LOCAL_JAVA_OPTS)
        native = [str(d) for d in _NATIVE_LIB_DIRS if d.is_dir()]
        if native:
            java_opts.append("-Djava.library.path=" + os.pathsep.join(native))
        conf["spark.driver.extraJavaOptions"] = " ".join(java_opts)
        conf["spark.sql.warehouse.dir"] = str(Path(tempfile.gettempdir()) / "asgard-spark-warehouse")
        for key, value in extra.items():
            if key == "spark.jars":
                conf[key] = ",".join([conf[key], value])
            elif key == "spark.sql.extensions":
                conf[key] = ",".join([ICEBERG_EXTENSIONS, value])
            else:
                conf[key] = value
        conf.setdefault("spark.sql.extensions", ICEBERG_EXTENSIONS)
        return conf

    @staticmethod
    def catalog_conf(catalog: CatalogSettings) -> dict[str, str]:
        """Per-session settings registering ``catalog`` as ``iceberg`` (table caching off: pyiceberg writes too)."""
        conf = catalog.spark_conf()
        conf.setdefault("spark.sql.catalog.iceberg.cache-enabled", "false")
        return conf

    def get_session(self, catalog: CatalogSettings) -> SparkSession:
        """Return a Spark session whose ``iceberg`` catalog is ``catalog``, reusing this process's JVM."""
        global _root, _root_conf
        static = self.session_conf(catalog)
        catalog_conf = self.catalog_conf(catalog)
        key = tuple(sorted(catalog_conf.items()))
        with _lock:
            if _root is not None and not _alive(_root):
                _root = None
                _sessions.clear()
            if _root is not None and _root_conf != static:
                log.warning("Spark settings changed; restarting the Spark session of this process")
                _root.stop()
                _root = None
                _sessions.clear()
            if _root is None:
                _root = _start(static)
                _root_conf = static
            session = _sessions.get(key)
            if session is None:
                _create_catalog_tables(catalog)
                session = _root.newSession()
                for name, value in catalog_conf.items():
                    session.conf.set(name, value)
                _sessions[key] = session
                while len(_sessions) > _MAX_CATALOG_SESSIONS:
                    _sessions.popitem(last=False)
            else:
                _sessions.move_to_end(key)
            return session

    def get_conn(self) -> SparkSession:
        """Return a session on the embedded catalog (use :meth:`get_session` to choose the catalog)."""
        return self.get_session(CatalogSettings.embedded())

    def test_connection(self) -> tuple[bool, str]:
        """Check the jars, then run ``java -version`` (local master) or open the master's port (``spark://``)."""
        try:
            conf = self.session_conf(CatalogSettings.embedded())
        except Exception as exc:
            return False, str(exc)
        master = conf["spark.master"]
        jars = f"{len(conf['spark.jars'].split(','))} jars"
        if master.startswith("local"):
            java = _java_version()
            if java.startswith("error: "):
                return False, f"master {master}: {java[len('error: ') :]}"
            return True, f"master {master}, {java}, {jars}"
        if master.startswith("spark://"):
            import socket

            for address in master[len("spark://") :].split(","):
                host, _, port = address.partition(":")
                try:
                    socket.create_connection((host, int(port or 7077)), timeout=5).close()
                except (OSError, ValueError) as exc:
                    return False, f"Spark master {address} is not reachable: {exc}"
            return True, f"master {master} reachable, {jars}"
        return True, f"master {master} (not probed), {jars}"


def _java_version() -> str:
    """First line of ``java -version`` (``$JAVA_HOME/bin/java`` first), or ``error: <why>``."""
    import shutil
    import subprocess

    home = Path(os.environ.get("JAVA_HOME") or "/nonexistent") / "bin" / "java"
    java = str(home) if home.is_file() else shutil.which("java")
    if java is None:
        return "error: no Java runtime found (install Java 17, e.g. Debian openjdk-17-jre-headless, or set JAVA_HOME)"
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"error: cannot run {java}: {exc}"
    lines = (done.stderr or done.stdout).strip().splitlines()
    if done.returncode != 0 or not lines:
        return f"error: {java} -version exited with code {done.returncode}"
    return lines[0]


def stop_sessions() -> None:
    """Stop this process's Spark session (and its JVM context), if one was started."""
    global _root
    with _lock:
        if _root is not None:
            _root.stop()
        _root = None
        _sessions.clear()


def find_jars(catalog: CatalogSettings | None = None) -> list[str]:
    """Jars a session needs: ``$ASGARD_SPARK_JARS``, else the Iceberg Spark runtime plus the JDBC drivers."""
    override = os.environ.get(JARS_ENV, "").strip()
    if override:
        jars = [j.strip() for j in override.split(",") if j.strip()]
        missing = [j for j in jars if not Path(j).is_file()]
        if missing:
            raise TransformError(f"${JARS_ENV} names jars that do not exist: {', '.join(missing)}")
        return jars
    jars = [str(iceberg_runtime_jar())]
    driver = _catalog_driver(catalog) if catalog is not None else None
    for name, patterns in _JDBC_JARS.items():
        found = _find_in_dirs(patterns)
        if found is not None:
            jars.append(str(found))
        elif name == driver:
            dirs = ", ".join(str(d) for d in JDBC_JAR_DIRS)
            package = "libxerial-sqlite-jdbc-java" if name == "sqlite" else "libpostgresql-jdbc-java"
            raise TransformError(
                f"the Iceberg catalog is a {name} database but no {name} JDBC driver jar was found in {dirs}; "
                f"install it (Debian: {package}) or list every jar in ${JARS_ENV}"
            )
    return jars


def iceberg_runtime_jar() -> Path:
    """Locate ``iceberg-spark-runtime-3.5_<scala>-*.jar`` in the snowpark-connect-deps-iceberg package."""
    spec = importlib.util.find_spec("snowpark_connect_deps_iceberg")
    scala = _scala_version()
    if spec is not None and spec.origin:
        jars_dir = Path(spec.origin).parent / "jars"
        candidates = sorted(jars_dir.glob(f"iceberg-spark-runtime-3.5_{scala}-*.jar"))
        if candidates:
            return candidates[-1]
    raise TransformError(
        f"Iceberg Spark runtime jar (iceberg-spark-runtime-3.5_{scala}) not found: install the "
        f"snowpark-connect-deps-iceberg package or set ${JARS_ENV} to the comma-separated jar paths"
    )


def _scala_version() -> str:
    spec = importlib.util.find_spec("pyspark")
    if spec is not None and spec.origin:
        for jar in (Path(spec.origin).parent / "jars").glob("scala-library-*.jar"):
            return ".".join(jar.stem.split("-")[-1].split(".")[:2])
    return "2.12"


def _catalog_driver(catalog: CatalogSettings) -> str | None:
    if catalog.type != "sql":
        return None
    if catalog.uri.startswith("sqlite"):
        return "sqlite"
    if catalog.uri.startswith("postgres"):
        return "postgresql"
    return None


def _find_in_dirs(patterns: tuple[str, ...]) -> Path | None:
    for folder in JDBC_JAR_DIRS:
        for pattern in patterns:
            matches = sorted(folder.glob(pattern))
            if matches:
                return matches[0]
    return None


def _log4j2_file() -> Path:
    path = Path(tempfile.gettempdir()) / f"asgard-spark-log4j2-{os.getuid()}.properties"
    if not path.is_file() or path.read_text() != _LOG4J2:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".properties")
        with os.fdopen(fd, "w") as fh:
            fh.write(_LOG4J2)
        Path(tmp).replace(path)
    return path


def _create_catalog_tables(catalog: CatalogSettings) -> None:
    """Let pyiceberg create a SQLite catalog's tables (Spark is told not to: see ``CatalogSettings.spark_conf``)."""
    if catalog.type != "sql" or not catalog.uri.startswith("sqlite:///"):
        return
    from pyiceberg.catalog import load_catalog

    from asgard_provider.catalog import CATALOG_NAME

    Path(catalog.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        sql_catalog = load_catalog(CATALOG_NAME, **catalog.pyiceberg_properties())
    except Exception as exc:
        raise CatalogError(f"cannot open Iceberg catalog {catalog.uri}: {exc}") from exc
    engine = getattr(sql_catalog, "engine", None)
    if engine is not None:
        engine.dispose()


def local_spark_pool() -> str | None:
    """Airflow pool for local Spark tasks: ``[asgard] local_spark_pool`` (``None``: Airflow's default pool).

    Each local Spark task starts its own JVM; on a small worker a pool with one or two slots keeps them from
    starting at once and fighting over the cores (``make airflow`` creates ``asgard_spark`` with one slot).
    """
    from airflow.providers.common.compat.sdk import conf

    return conf.get("asgard", "local_spark_pool", fallback="") or None


class SparkProgress:
    """Log what a local Spark session is doing every ``every`` seconds while a block runs (a context manager)."""

    def __init__(self, spark: SparkSession, what: str, logger: logging.Logger, every: float = PROGRESS_EVERY_S):
        self.spark, self.what, self.logger, self.every = spark, what, logger, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="asgard-spark-progress", daemon=True)

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every):
            self.logger.info("%s: still running after %.0fs; %s", self.what, time.monotonic() - started, self.status())

    def status(self) -> str:
        """Active stages with their finished/total tasks, e.g. ``stage 4 (count at ...): 3/8 tasks``."""
        try:
            tracker = self.spark.sparkContext.statusTracker()
            stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        except Exception as exc:  # the JVM may be going away; progress lines are best effort
            return f"no Spark status ({exc.__class__.__name__})"
        parts = [f"stage {i.stageId} ({i.name}): {i.numCompletedTasks}/{i.numTasks} tasks" for i in stages if i]
        return "; ".join(parts) or "no active Spark stage (planning, committing or writing metadata)"


def _alive(session: SparkSession) -> bool:
    sc = session.sparkContext
    return sc._jsc is not None and not sc._jsc.sc().isStopped()


def _start(conf: dict[str, str]) -> SparkSession:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    running = SparkContext._active_spark_context
    if running is not None:
        jars = running.getConf().get("spark.jars", "") or ""
        if iceberg_runtime_jar().name not in jars and not os.environ.get(JARS_ENV):
            raise TransformError(
                "a Spark session without the Iceberg runtime is already running in this process; "
                "stop it before running Asgard's Spark transforms"
            )
    # py4j logs every connection it closes at INFO, some of them while the interpreter shuts down.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder
    for name, value in conf.items():
        builder = builder.config(name, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise TransformError(f"cannot start Spark (master {conf.get('spark.master')}): {exc}") from exc
    session.sparkContext.setLogLevel("WARN")
    return session
