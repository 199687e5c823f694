"""Hook giving object-storage sources their S3 credentials from an Airflow connection."""

from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook

from asgard_provider.sources.common import source_connection
from asgard_provider.sources.files import S3Credentials


class ObjectStoreHook(BaseHook):
    """S3 (or S3-compatible) credentials from an ``aws`` connection.

    ``login`` = access key id, ``password`` = secret access key; extra ``region_name``, ``endpoint_url`` (an
    S3-compatible server such as MinIO) and ``aws_session_token``. Without a connection id, pyarrow's default
    chain applies (environment, instance profile).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "aws_default"
    conn_type = "aws"
    hook_name = "Object storage source (Asgard)"

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id

    @cached_property
    def credentials(self) -> S3Credentials:
        """The connection's keys, region and endpoint."""
        if not self.conn_id:
            return S3Credentials()
        conn = source_connection(self, self.conn_id)
        extra = conn.extra_dejson
        return S3Credentials(
            access_key=conn.login or "",
            secret_key=conn.password or "",
            session_token=str(extra.get("aws_session_token") or ""),
            region=str(extra.get("region_name") or ""),
            endpoint_url=str(extra.get("endpoint_url") or ""),
        )

    def get_conn(self) -> S3Credentials:
        """Return the credentials (filesystems are opened per read)."""
        return self.credentials
