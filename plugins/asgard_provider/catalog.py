"""One Iceberg catalog definition, rendered for every engine that reads or writes it.

pyiceberg, Spark, dbt-duckdb and Feast all see the same catalog: a SQL catalog (SQLite file in
embedded mode, PostgreSQL in production) or an Iceberg REST catalog, over one warehouse location.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from asgard_provider.exceptions import CatalogError
from asgard_provider.settings import asgard_home

#: Catalog name used everywhere: Spark SQL addresses tables as ``iceberg.<namespace>.<table>``.
CATALOG_NAME = "iceberg"

#: Spark session extensions that give Spark SQL Iceberg's procedures and MERGE INTO.
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"

#: The pattern of a namespace, table or column identifier, for embedding in larger patterns.
IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
#: A whole namespace, table or column identifier (``merge_keys`` too).
IDENTIFIER = re.compile(rf"^{IDENTIFIER_PATTERN}$")
_TABLE_REF = re.compile(rf"\b{CATALOG_NAME}\.({IDENTIFIER_PATTERN})\.({IDENTIFIER_PATTERN})\b")


def table_refs(sql: str) -> list[str]:
    """Tables a Spark SQL text reads, as ``namespace.table``, in order of first mention."""
    return list(dict.fromkeys(f"{ns}.{table}" for ns, table in _TABLE_REF.findall(sql)))


def split_table_name(name: str) -> tuple[str, str]:
    """Split ``[iceberg.]namespace.table`` into (namespace, table), validating both identifiers."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == CATALOG_NAME:
        parts = parts[1:]
    if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
        raise CatalogError(f"invalid table name {name!r}: expected 'namespace.table' (letters, digits, underscore)")
    return parts[0], parts[1]


@dataclass(frozen=True)
class CatalogSettings:
    """Connection details of the shared Iceberg catalog."""

    type: str = "sql"
    uri: str = ""
    warehouse: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def embedded(cls) -> CatalogSettings:
        """SQLite catalog and local warehouse under ``$ASGARD_HOME``: no server needed."""
        home = asgard_home()
        return cls(
            type="sql",
            uri=f"sqlite:///{home / 'catalog.db'}",
            warehouse=f"file://{home / 'warehouse'}",
        )

    def pyiceberg_properties(self) -> dict[str, str]:
        """Properties for ``pyiceberg.catalog.load_catalog(CATALOG_NAME, **props)``."""
        props = {"type": self.type, "uri": self.uri, "warehouse": self.warehouse}
        if self.type == "sql" and self.uri.startswith("sqlite"):
            # pyiceberg creates its two tables on first use; Spark's JdbcCatalog reads the same ones.
            props["init_catalog_tables"] = "true"
        props.update(self.properties)
        return props

    def split_password(self) -> tuple[str, str | None]:
        """Return the catalog URI without its password, and the password (``None`` if the URI has none).

        Stored definitions (the Feast registry) keep the URI without the password; readers get it from
        ``PGPASSWORD`` (see :func:`export_catalog_password`).
        """
        parts = urlsplit(self.uri)
        if self.type != "sql" or not parts.password:
            return self.uri, None
        host = parts.hostname or ""
        netloc = (parts.username or "") + "@" + host + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)

    def jdbc_url(self) -> tuple[str, dict[str, str]]:
        """Translate the SQLAlchemy URL of a SQL catalog into a JDBC URL plus credentials."""
        if self.type != "sql":
            raise CatalogError(f"catalog type {self.type!r} has no JDBC URL")
        if self.uri.startswith("sqlite:///"):
            return "jdbc:sqlite:" + self.uri[len("sqlite:///") :], {}
        parts = urlsplit(self.uri)
        scheme = parts.scheme.split("+")[0]
        if scheme in ("postgresql", "postgres"):
            creds = {}
            if parts.username:
                creds["user"] = parts.username
            if parts.password:
                creds["password"] = parts.password
            port = f":{parts.port}" if parts.port else ""
            return f"jdbc:postgresql://{parts.hostname}{port}{parts.path}", creds
        raise CatalogError(f"unsupported SQL catalog URI scheme {parts.scheme!r} (use sqlite or postgresql)")

    def spark_conf(self) -> dict[str, str]:
        """Spark settings registering this catalog as ``iceberg`` in a Spark session."""
        prefix = f"spark.sql.catalog.{CATALOG_NAME}"
        conf = {
            prefix: "org.apache.iceberg.spark.SparkCatalog",
            f"{prefix}.warehouse": self.warehouse,
        }
        if self.type == "sql":
            url, creds = self.jdbc_url()
            conf[f"{prefix}.type"] = "jdbc"
            conf[f"{prefix}.uri"] = url
            # pyiceberg's SqlCatalog uses the V1 schema (with iceberg_type); tell Spark so it can share it.
            conf[f"{prefix}.jdbc.schema-version"] = "V1"
            if url.startswith("jdbc:sqlite:"):
                # Iceberg 1.9's table-initialisation check leaves a metadata ResultSet open, which holds a SQLite
                # read lock for the session's lifetime and makes every pyiceberg commit fail with "database is
                # locked". pyiceberg creates the tables instead (SparkHook opens the pyiceberg catalog first).
                conf[f"{prefix}.jdbc.init-catalog-tables"] = "false"
            for key, value in creds.items():
                conf[f"{prefix}.jdbc.{key}"] = value
        elif self.type == "rest":
            conf[f"{prefix}.type"] = "rest"
            conf[f"{prefix}.uri"] = self.uri
        else:
            raise CatalogError(f"unsupported catalog type {self.type!r} (use 'sql' or 'rest')")
        for key, value in self.properties.items():
            conf[f"{prefix}.{key}"] = value
        return conf

    def as_dict(self) -> dict[str, Any]:
        """Plain form, for passing to subprocesses (training scripts, dbt plugins)."""
        return {"type": self.type, "uri": self.uri, "warehouse": self.warehouse, "properties": dict(self.properties)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CatalogSettings:
        """Inverse of :meth:`as_dict`."""
        return cls(
            type=data.get("type", "sql"),
            uri=data["uri"],
            warehouse=data.get("warehouse", ""),
            properties=dict(data.get("properties") or {}),
        )


def export_catalog_password(settings: CatalogSettings) -> None:
    """Put a PostgreSQL catalog's password in ``PGPASSWORD`` for readers of password-less stored URIs.

    libpq reads ``PGPASSWORD`` when a connection URI has no password. An existing value (e.g. from a
    Kubernetes Secret) wins. Child processes (training scripts) inherit it.
    """
    _, password = settings.split_password()
    if password and not os.environ.get("PGPASSWORD"):
        os.environ["PGPASSWORD"] = password
