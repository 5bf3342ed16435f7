"""Schema Registry settings: part of the worker's one ``Settings`` object (a base class of it), and read on their
own by ``scorer produce`` / ``scorer tail``, so all three take the same ``SCORER_SCHEMA_REGISTRY_*`` environment.

Any Confluent-compatible registry works: Confluent Schema Registry, Apicurio Registry's ``/apis/ccompat/v7``,
Karapace.  The client is confluent-kafka's own (``confluent_kafka.schema_registry``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SubjectStrategy = Literal["topic", "record", "topic-record"]


class RegistrySettings(BaseSettings):
    """Where the Schema Registry is and how the scorer's own schemas are registered there."""

    model_config = SettingsConfigDict(env_prefix="SCORER_", frozen=True, extra="forbid")

    schema_registry_url: str | None = Field(
        None,
        description="Schema Registry base URL (comma separated for several). Set: framed Avro input is read with "
        "the writer schema its id names (fetched once per id, then cached) and resolved to ours, so compatible "
        "producer schema changes score unchanged; scores are framed with the registered SentimentScore id. "
        "Unset: framed input is read with our own schema and scores are plain Avro.",
    )
    schema_registry_user: str | None = Field(None, description="Schema Registry basic-auth user name.")
    schema_registry_password: SecretStr | None = Field(
        None, description="Schema Registry basic-auth password (secret; never logged)."
    )
    schema_registry_ca_location: Path | None = Field(
        None, description="CA bundle (PEM) that signs the registry's TLS certificate; default: the system's."
    )
    subject_name_strategy: SubjectStrategy = Field(
        "topic",
        description="Subject of the output schema: topic ('<output topic>-value', the usual one; one schema per "
        "topic), record (the record's full name, shared by every topic that carries it) or topic-record "
        "('<topic>-<record name>', several record types on one topic).",
    )
    auto_register_schemas: bool = Field(
        True,
        description="Register the SentimentScore schema under its subject at start (idempotent). Off: the subject's "
        "latest registered version is used (use.latest.version), for registries where only a pipeline may "
        "register; it must be the schema this worker writes or a compatible one.",
    )
    schema_cache_size: int = Field(
        1000,
        ge=1,
        description="Schemas kept per process (by id and by subject). One entry per writer schema version seen; "
        "an evicted schema is fetched again on its next record.",
    )
    schema_registry_timeout_s: float = Field(
        5.0,
        gt=0,
        description="One registry request's timeout. While the registry does not answer, the worker holds the "
        "message, pauses consumption and retries with backoff; shorter notices an outage sooner.",
    )

    @model_validator(mode="after")
    def _check_registry(self) -> RegistrySettings:
        if self.schema_registry_password is not None and not self.schema_registry_user:
            raise ValueError("schema_registry_password needs schema_registry_user")
        if self.schema_registry_url is not None:
            for url in self.schema_registry_url.split(","):
                if not url.strip().startswith(("http://", "https://", "mock://")):
                    raise ValueError(f"schema_registry_url must be http(s)://host:port, not {url.strip()!r}")
        return self

    def registry_client_config(self) -> dict[str, Any]:
        """confluent-kafka ``SchemaRegistryClient`` config (secrets revealed here only).  No client-side retries:
        the worker's loop retries on its own schedule, with consumption paused."""
        assert self.schema_registry_url is not None
        conf: dict[str, Any] = {
            "url": self.schema_registry_url,
            "cache.capacity": self.schema_cache_size,
            "timeout": self.schema_registry_timeout_s,
            "max.retries": 0,
        }
        if self.schema_registry_user:
            password = self.schema_registry_password.get_secret_value() if self.schema_registry_password else ""
            conf["basic.auth.user.info"] = f"{self.schema_registry_user}:{password}"
        if self.schema_registry_ca_location is not None:
            conf["ssl.ca.location"] = str(self.schema_registry_ca_location)
        return conf
