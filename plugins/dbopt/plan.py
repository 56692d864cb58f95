"""The week plan: a YAML file validated by a typed model.

Errors name the file, the line, the field path and the fix (``PlanError``). Plans never carry
secrets: targets name Airflow connection ids, and connections hold the credentials.
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# libyaml's parser when PyYAML was built with it (the wheels are): plans are parsed on every DAG parse
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PLANS_DIR_ENV = "DBOPT_PLANS_DIR"
DEFAULT_PLANS_DIR = Path(__file__).resolve().parents[2] / "include" / "plans"

# Plans name tables and columns as plain identifiers. Targets quote everything anyway; this makes a
# plan that smuggles SQL into a name fail at validation, with a message, before anything runs.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
PLAN_ID = re.compile(r"^[a-z0-9][a-z0-9_]{0,60}$")


def _identifier(value: str, what: str = "identifier") -> str:
    parts = value.split(".")
    if len(parts) > 2 or not all(IDENTIFIER.match(p) for p in parts):
        raise ValueError(
            f"{value!r} is not a plain {what}: use letters, digits, '_' or '$' (optionally 'schema.name'); "
            "quotes, spaces and SQL are not allowed"
        )
    return value


def _column(value: str) -> str:
    """A column name, optionally followed by ASC or DESC."""
    parts = value.split()
    if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
        raise ValueError(f"{value!r}: write a column name optionally followed by ASC or DESC, e.g. 'created_at DESC'")
    _identifier(parts[0], "column name")
    return value


TableName = Annotated[str, AfterValidator(lambda v: _identifier(v, "table name"))]
ColumnName = Annotated[str, AfterValidator(lambda v: _identifier(v, "column name"))]
IndexName = Annotated[str, AfterValidator(lambda v: _identifier(v, "index name"))]
KeyColumn = Annotated[str, AfterValidator(_column)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(Strict):
    cron: str | None = Field(None, description="5-field cron, or null for manual runs only")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5 and not v.startswith("@"):
            raise ValueError(f"{v!r} is not a 5-field cron expression (e.g. '0 9 * * 1') or a preset like '@weekly'")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r}: use an IANA name such as 'Asia/Seoul' or 'UTC'") from None
        return v


# --- Cloud SQL downsizing by replica (week-17 plan, seed 001 day 7): dbopt.cloud.resize --------------------

CLOUD_SQL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,96}[a-z0-9]$")


class CloudSqlResize(Strict):
    tier: str = Field(description="the smaller machine type, e.g. db-custom-8-16384")
    replica_conn_id: str = Field(description="Airflow connection of the replica's database: the benchmark runs there")
    replica: str | None = Field(None, description="name of the replica instance (default: <instance>-resized)")
    standby_hours: float = Field(48, ge=0, description="the old primary is kept this long, then deleted")
    ready_timeout_s: float = Field(3600, gt=0, description="how long the replica may take to become RUNNABLE")

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        if not re.match(r"^db-[a-z0-9-]+$", v):
            raise ValueError(f"{v!r} is not a Cloud SQL tier; write a machine type such as 'db-custom-8-16384'")
        return v

    @field_validator("replica")
    @classmethod
    def _replica(cls, v: str | None) -> str | None:
        if v is not None and not CLOUD_SQL_NAME.match(v):
            raise ValueError(f"{v!r}: instance names use lower-case letters, digits and '-', starting with a letter")
        return v


class CloudSqlInstance(Strict):
    project: str
    instance: str
    conn_id: str = "google_cloud_sql"
    resize: CloudSqlResize | None = None


# Target names become Airflow task group ids, services and regions part of one: what Airflow accepts
# (ASCII letters, digits, '_' and '-'), checked here so a bad name is a plan error, not a lost DAG.
AIRFLOW_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _airflow_name(value: str, what: str) -> str:
    if not AIRFLOW_NAME.match(value):
        raise ValueError(
            f"{value!r} cannot be a {what}: it names Airflow tasks, so use only letters, digits, '_' and '-' "
            f"(at most 100), e.g. {re.sub(r'[^A-Za-z0-9_-]+', '_', value).strip('_')[:100] or 'primary'!r}"
        )
    return value


class TargetSpec(Strict):
    name: Annotated[str, AfterValidator(lambda v: _airflow_name(v, "target name"))] = "primary"
    conn_id: str = Field(description="Airflow connection id of the database (credentials live there)")
    bench_conn_id: str | None = Field(
        None, description="the same database as a SELECT-only user: benchmark replays run as it (default: conn_id)"
    )
    dialect: Literal["postgres", "mysql", "sqlite"]
    tables: list[TableName] = Field(default_factory=list, description="limit advice to these tables (empty: all)")
    cloud_sql: CloudSqlInstance | None = None


class HealthGate(Strict):
    """GO only when every figure that has a threshold is within it (and known)."""

    availability_min_pct: float | None = Field(None, ge=0, le=100)
    error_rate_max_pct: float | None = Field(None, ge=0, le=100)
    p95_ms_max: float | None = Field(None, gt=0)
    cache_hit_ratio_min: float | None = Field(None, ge=0, le=1)
    cache_hit_ratio_source: Literal["database", "redis"] = Field(
        "database", description="the database's buffer cache, or the cache: section's Redis (INFO stats)"
    )
    replication_lag_ms_max: float | None = Field(None, ge=0)
    long_transactions_max: int | None = Field(None, ge=0)
    long_transaction_s: float = Field(60, gt=0)
    connections_used_max_pct: float | None = Field(None, ge=0, le=100)
    window_s: float = Field(86400, gt=0, description="service figures are judged over this window (seed: 24 h)")
    # Figures a source cannot measure: "no_go" is the safe default; "ignore" skips them.
    on_missing: Literal["no_go", "ignore"] = "no_go"
    metrics_conn_id: str | None = Field(None, description="Prometheus connection for service-level figures")

    @model_validator(mode="after")
    def _service_source(self) -> HealthGate:
        service = [
            k for k in ("availability_min_pct", "error_rate_max_pct", "p95_ms_max") if getattr(self, k) is not None
        ]
        if service and not self.metrics_conn_id:
            raise ValueError(f"{', '.join(service)} need 'metrics_conn_id' (a Prometheus connection) to be measured")
        return self


class WorkloadSpec(Strict):
    source: Literal["auto", "pg_stat_statements", "performance_schema", "slowlog", "querylog"] = "auto"
    path: str | None = Field(None, description="log file for slowlog/querylog sources")
    min_mean_ms: float = Field(0.0, ge=0)
    min_calls: int = Field(1, ge=1)
    top_n: int = Field(50, ge=1, le=10000)
    exclude: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _path(self) -> WorkloadSpec:
        if self.source == "slowlog" and not self.path:
            raise ValueError("source 'slowlog' needs 'path' (the slow query log file)")
        return self


class ExplicitIndex(Strict):
    table: TableName
    columns: list[KeyColumn] = Field(min_length=1, description="column names, each optionally followed by ASC/DESC")
    include: list[ColumnName] = Field(default_factory=list)
    unique: bool = False
    name: IndexName | None = None


class IndexPolicy(Strict):
    auto_advice: bool = True
    explicit: list[ExplicitIndex] = Field(default_factory=list)
    storage_budget_mb: float = Field(1024, gt=0)
    max_per_table: int = Field(3, ge=0)
    allow_drops: bool = Field(False, description="drop unused/redundant indexes the advisor reports")
    lock_timeout_s: float = Field(5, gt=0)
    statement_timeout_s: float = Field(3600, gt=0)
    retries: int = Field(3, ge=0, le=10)
    min_table_rows: int = Field(10000, ge=0)


class BenchQuerySpec(Strict):
    name: str
    sql: str | list[str] = Field(description="concrete SELECT (or several variants with real parameter values)")


def _safe_function(name: str) -> str:
    from dbopt.replay_safety import denied_reason

    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r}: give a bare function name (letters, digits, '_'; no schema, no arguments)")
    if why := denied_reason(name):
        raise ValueError(f"{name!r} is never safe to replay: it {why}; remove it from the list")
    return name


class BenchmarkSpec(Strict):
    queries: list[BenchQuerySpec] = Field(
        default_factory=list, description="explicit queries; empty: the workload's examples are replayed"
    )
    from_workload: int = Field(10, ge=0, description="replay the top N workload statements that have examples")
    iterations: int = Field(30, ge=5, le=100000)
    warmup: int = Field(3, ge=0)
    min_effect: float = Field(0.10, ge=0, lt=1, description="smallest relative change that counts")
    alpha: float = Field(0.01, gt=0, lt=1)
    targets: dict[Literal["mean_ms", "p50_ms", "p95_ms", "p99_ms"], float] = Field(default_factory=dict)
    safe_functions: list[Annotated[str, AfterValidator(_safe_function)]] = Field(
        default_factory=list, description="user functions that only read: benchmark and workload queries may call them"
    )


class ServiceRef(Strict):
    name: Annotated[str, AfterValidator(lambda v: _airflow_name(v, "Cloud Run service name"))]
    region: Annotated[str, AfterValidator(lambda v: _airflow_name(v, "region"))]
    target: str | None = Field(
        None, description="the plan target whose database the canary's database rules read (several targets)"
    )


class DeploySpec(Strict):
    """A Cloud Run config change rolled out as a canary (one analysis per service)."""

    enabled: bool = False
    conn_id: str = "google_cloud_run"
    project: str | None = None
    services: list[ServiceRef] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="config change, e.g. DB_POOL_SIZE")
    canary_percent: int = Field(10, ge=1, le=99, description="the canary's share of traffic (its first, with steps)")
    steps: list[Any] | None = Field(
        None, description="stepped canary: traffic shares analysed one after another, e.g. [10, 25, 50]"
    )
    on_region_failure: Literal["rollback_region", "rollback_all"] = Field(
        "rollback_region", description="a canary that does not pass rolls back its own region, or every region"
    )

    @model_validator(mode="before")
    @classmethod
    def _first_step(cls, data: Any) -> Any:
        """With steps, canary_percent is the first step: filled in when the plan leaves it out."""
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list) and steps and "canary_percent" not in data:
            return data | {"canary_percent": steps[0]}
        return data

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[Any] | None) -> list[int] | None:
        from dbopt.metrics.steps import check_steps

        return None if v is None else list(check_steps(v, None))

    @model_validator(mode="after")
    def _needs(self) -> DeploySpec:
        if self.enabled and (not self.project or not self.services):
            raise ValueError("deploy.enabled needs 'project' and at least one entry in 'services'")
        if self.steps and self.canary_percent != self.steps[0]:
            raise ValueError(
                f"canary_percent {self.canary_percent} and steps {self.steps} disagree: the canary's first share "
                f"is steps[0]; drop canary_percent or set it to {self.steps[0]}"
            )
        return self


class RuleSpec(Strict):
    """A rollback rule (the bad state). Field names are ``dbopt.metrics.rules.Rule``'s."""

    metric: Literal[
        "latency_p95_ms", "error_ratio", "request_rate", "pool_usage", "pool_timeouts",
        "cache_hit_ratio", "connections_used", "connections_ratio", "replication_lag_s",
        "long_transactions", "longest_transaction_s",
    ]  # fmt: skip
    op: Literal["<", "<=", ">", ">="] = ">"
    threshold: float
    scope: Literal["canary", "baseline", "service", "database"] = "canary"
    window_s: float = Field(300, gt=0, description="how far back each evaluation looks")
    sustained_for_s: float = Field(0, ge=0, description="the bad state must last this long to fail")
    min_samples: int = Field(1, ge=1)
    min_requests: int = Field(0, ge=0, description="fewer requests than this in the window → inconclusive")
    relative_to: Literal["canary", "baseline", "service"] | None = Field(
        None, description="threshold is a factor of this scope's value (e.g. canary p95 > 1.2 × baseline)"
    )
    name: str = ""
    source: Literal["redis"] | None = Field(
        None, description="redis: cache_hit_ratio from the cache: section's Redis INFO stats (scope service)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        if self.sustained_for_s > self.window_s:
            raise ValueError("sustained_for_s must not exceed window_s")
        if self.source == "redis" and (self.metric != "cache_hit_ratio" or self.scope != "service"):
            raise ValueError(
                "source redis measures only the whole server's hit ratio: use metric cache_hit_ratio, scope service"
            )
        if self.scope == "database" and (self.min_requests or self.relative_to):
            raise ValueError("database rules take no min_requests or relative_to (the database counts no requests)")
        return self


class MonitorSpec(Strict):
    duration_s: float = Field(1800, gt=0)
    interval_s: float = Field(60, gt=0)
    metrics_source: Literal["prometheus", "cloud_monitoring"] = Field(
        "prometheus", description="where canary/baseline/service figures come from"
    )
    metrics_conn_id: str | None = Field(None, description="Prometheus connection id (metrics_source: prometheus)")
    monitoring_endpoint: str | None = Field(
        None, description="Cloud Monitoring API endpoint override (a local stand-in); default: Google's"
    )
    warmup_s: float = Field(0, ge=0, description="no verdicts before the canary has run this long")
    rules: list[RuleSpec] = Field(default_factory=list)
    required_passes: int = Field(3, ge=1, description="passing checks in a row that promote")
    failure_limit: int = Field(0, ge=0, description="failed checks tolerated; 0 = roll back on the first")
    inconclusive_limit: int = Field(3, ge=0)
    on_inconclusive: Literal["rollback", "promote"] = Field(
        "rollback", description="the safe state when the evidence stays inconclusive (no data is not a pass)"
    )
    revert_indexes_on_rollback: bool = False
    mode: Literal["deferrable", "poke"] = Field(
        "deferrable", description="deferrable: the triggerer waits, no worker slot held; poke: a worker does"
    )

    @model_validator(mode="after")
    def _interval(self) -> MonitorSpec:
        if self.interval_s > self.duration_s or self.warmup_s >= self.duration_s:
            raise ValueError("interval_s must not exceed duration_s, and warmup_s must be shorter than it")
        service_rules = [r.metric for r in self.rules if r.scope != "database"]
        if service_rules and self.metrics_source == "prometheus" and not self.metrics_conn_id:
            raise ValueError(f"rules on {service_rules} need 'metrics_conn_id' (a Prometheus connection)")
        return self

    def analysis_plan(self) -> dict[str, Any]:
        """The canary analysis (``dbopt.metrics.analysis.AnalysisPlan``) as plain data."""
        return {
            "rules": [r.model_dump(exclude_none=True) for r in self.rules],
            "interval_s": self.interval_s, "warmup_s": self.warmup_s, "deadline_s": self.duration_s,
            "required_passes": self.required_passes, "failure_limit": self.failure_limit,
            "inconclusive_limit": self.inconclusive_limit, "safe_state": self.on_inconclusive,
        }  # fmt: skip


class ReportSpec(Strict):
    recipients: list[str] = Field(default_factory=list)
    directory: str | None = Field(None, description="where reports go (default $DBOPT_REPORTS_DIR or ./reports)")

    @field_validator("recipients")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for r in v:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", r):
                raise ValueError(f"{r!r} is not an e-mail address")
        return v


class MaintenanceWindow(Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24-hour clock")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24-hour clock")


class RunPolicy(Strict):
    """One run per database at a time (see README, "One run per database")."""

    on_busy: Literal["fail", "wait"] = Field(
        "fail", description="another run holds the database: fail at once, or wait for it (up to wait_timeout_s)"
    )
    wait_timeout_s: float = Field(3600, gt=0)
    lease_ttl_s: float = Field(
        86400, gt=0, description="a run's hold on the database expires this long after its last step (a dead run)"
    )


# --- cache warming (week-17 plan, seed 002 day 10): dbopt.cache -----------------------------------------


class CacheRefresh(Schedule):
    """When ``dbopt_cache_refresh_<plan>`` re-warms: a cron in a time zone, optionally only the hottest N."""

    cron: str | None = Field("0 */4 * * *", description="5-field cron; null: warm only after the weekly run")
    top_n: int | None = Field(None, ge=1, description="refresh only the first N statements (the hottest)")


class CacheSpec(Strict):
    redis_conn_id: str = Field(description="Airflow connection of the Redis server (host, port, password, extra.db)")
    target: str | None = Field(None, description="the plan target whose read path runs the statements (default: first)")
    statements: list[BenchQuerySpec] = Field(
        default_factory=list, description="hot reads to warm: concrete SELECTs (a list of strings = variants)"
    )
    from_workload: int = Field(0, ge=0, description="also warm the top N read statements by calls (with examples)")
    key_template: str = "dbopt:{plan}:{name}:{digest}"
    ttl_s: int = Field(14400, ge=1, description="seconds each key lives (SET … EX)")
    batch_size: int = Field(100, ge=1, le=10000, description="SETs per pipelined round trip")
    max_value_bytes: int = Field(1 << 20, ge=1, description="larger results are skipped, not truncated")
    refresh: CacheRefresh = CacheRefresh()
    hit_ratio_window_s: float = Field(300, gt=0, description="hit ratio before/after warming is measured over this")

    @field_validator("key_template")
    @classmethod
    def _key_template(cls, v: str) -> str:
        from dbopt.cache.warm import check_key_template

        return check_key_template(v)

    @model_validator(mode="after")
    def _something_to_warm(self) -> CacheSpec:
        if not self.statements and not self.from_workload:
            raise ValueError("nothing to warm: list 'statements' or set 'from_workload' to a number of statements")
        return self


# --- scaling learned from traffic (week-17 plan, issue 17): dbopt.cloud.scaling / forecast ------------------


class ScalingSpec(Strict):
    """The scaling rules the hourly ``dbopt_scaling`` DAG applies; the weekly report shows their forecast."""

    rules_file: str = Field(description="scaling rules YAML (relative paths: from the project root)")
    metrics_conn_id: str | None = Field(None, description="Prometheus connection with the services' traffic history")

    def rules_path(self) -> Path:
        path = Path(self.rules_file)
        return path if path.is_absolute() else DEFAULT_PLANS_DIR.parents[1] / path

    @model_validator(mode="after")
    def _rules_exist(self) -> ScalingSpec:
        if not self.rules_path().is_file():
            raise ValueError(
                f"rules_file {self.rules_file!r}: no such file ({self.rules_path()}); name a scaling rules YAML "
                "such as include/scaling/rules.yaml (relative to the project root)"
            )
        return self


class Plan(Strict):
    id: Annotated[str, Field(description="lower-case id; the DAG is dbopt_<id>")]
    description: str = ""
    owner: str = "dbopt"
    tags: list[str] = Field(default_factory=list)
    schedule: Schedule = Schedule()
    targets: list[TargetSpec] = Field(min_length=1)
    health_gate: HealthGate = HealthGate()
    workload: WorkloadSpec = WorkloadSpec()
    indexes: IndexPolicy = IndexPolicy()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    deploy: DeploySpec = DeploySpec()
    monitor: MonitorSpec = MonitorSpec()
    report: ReportSpec = ReportSpec()
    maintenance_window: MaintenanceWindow | None = None
    run: RunPolicy = RunPolicy()
    cache: CacheSpec | None = None
    scaling: ScalingSpec | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not PLAN_ID.match(v):
            raise ValueError(f"{v!r}: use lower-case letters, digits and '_' (e.g. 'week17')")
        return v

    @model_validator(mode="after")
    def _unique_targets(self) -> Plan:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _service_targets(self) -> Plan:
        names = [t.name for t in self.targets]
        for s in self.deploy.services:
            if s.target is not None and s.target not in names:
                raise ValueError(f"deploy.services {s.name}: target {s.target!r} is not a target of the plan {names}")
            if s.target is None and len(names) > 1 and self.deploy.enabled:
                raise ValueError(
                    f"deploy.services {s.name}: the plan has several targets {names}; "
                    "name the one whose database the canary's database rules read (target: NAME)"
                )
        return self

    def service_target(self, service: ServiceRef) -> str:
        """The target whose database the service's canary reads (the only target when there is one)."""
        return service.target or self.targets[0].name

    @model_validator(mode="after")
    def _cache_target(self) -> Plan:
        names = [t.name for t in self.targets]
        if self.cache and self.cache.target is not None and self.cache.target not in names:
            raise ValueError(f"cache.target {self.cache.target!r} is not a target of this plan; use one of {names}")
        if self.cache is None and self.health_gate.cache_hit_ratio_source == "redis":
            raise ValueError("health_gate.cache_hit_ratio_source redis needs a cache: section (its redis_conn_id)")
        if self.cache is None and any(r.source == "redis" for r in self.monitor.rules):
            raise ValueError("monitor.rules with source redis need a cache: section (its redis_conn_id is measured)")
        return self

    @property
    def dag_id(self) -> str:
        return f"dbopt_{self.id}"


class PlanError(ValueError):
    """A plan file that cannot be used; the message says where and how to fix it."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"invalid plan {self.path}:\n" + "\n".join(f"  - {p}" for p in problems))


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node a pydantic error location points at (deepest that exists)."""
    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                # an unknown key: point at the key itself
                return next((k for k, _ in node.value if k.value == key), node)
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Plan
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _describe(err: dict[str, Any], root: yaml.Node | None) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc) or "(top level)"
    node = _node_at(root, loc)
    line = f"line {node.start_mark.line + 1}" if node is not None else "line ?"
    msg = err["msg"].removeprefix("Value error, ")
    fix = ""
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f" — did you mean {close[0]!r}?" if close else f" — allowed fields: {', '.join(allowed)}"
        msg = "unknown field"
    elif err["type"] == "missing":
        fix = " — add it"
    elif err["type"] == "literal_error" or "type" in err["type"] or err["type"].endswith("_parsing"):
        fix = f" (got {err.get('input')!r})"
    return f"{line}: {path}: {msg}{fix}"


def parse_plan(text: str, path: Path | str = "<string>") -> Plan:
    # One pass: compose the node tree (its marks give error line numbers), then build the data from it.
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "line ?"
        raise PlanError(path, [f"{where}: not valid YAML: {getattr(err, 'problem', err)}"]) from None
    except (ValueError, RecursionError) as err:  # a scalar that cannot be built (2001-13-45, !!float x), deep nesting
        raise PlanError(path, [f"line ?: not valid YAML: {err}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise PlanError(path, ["line 1: (top level): a plan is a YAML mapping with at least 'id' and 'targets'"])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        raise PlanError(path, [_describe(e, root) for e in err.errors()]) from None  # type: ignore[arg-type]
    if problems := _unsafe_benchmark_sql(plan, root):
        raise PlanError(path, problems)
    return plan


def _unsafe_benchmark_sql(plan: Plan, root: yaml.Node | None) -> list[str]:
    """SQL the plan asks dbopt to run (benchmark.queries, cache.statements) that a target could not
    replay safely, checked in each target's dialect."""
    sections = [(("benchmark", "queries"), plan.benchmark.queries)]
    if plan.cache is not None:
        sections.append((("cache", "statements"), plan.cache.statements))
    if not any(queries for _, queries in sections):
        return []
    from dbopt.replay_safety import refusal  # here: sqlglot is a slow import, and most plans list no SQL

    problems = []
    for where, queries in sections:
        for i, q in enumerate(queries):
            texts = [q.sql] if isinstance(q.sql, str) else q.sql
            for j, text in enumerate(texts):
                loc: tuple[Any, ...] = (*where, i, "sql") + ((j,) if isinstance(q.sql, list) else ())
                node = _node_at(root, loc)
                line = f"line {node.start_mark.line + 1}" if node is not None else "line ?"
                for dialect in dict.fromkeys(t.dialect for t in plan.targets):
                    if why := refusal(text, dialect, plan.benchmark.safe_functions):
                        problems.append(
                            f"{line}: {'.'.join(map(str, loc))}: query {q.name!r} is not replayable on {dialect}: "
                            f"{why} — each must be one read-only SELECT"
                        )
                        break
    return problems


def load_plan(path: Path | str) -> Plan:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise PlanError(p, [f"cannot read the file: {err.strerror}"]) from None
    plan = parse_plan(text, p)
    if p.stem != plan.id:
        raise PlanError(p, [f"line 1: id: the plan id {plan.id!r} must equal the file name {p.stem!r}"])
    return plan


def plans_dir() -> Path:
    return Path(os.environ.get(PLANS_DIR_ENV) or DEFAULT_PLANS_DIR)


def plan_files(directory: Path | None = None) -> list[Path]:
    """Plan files in a stable order (DAG generation must be deterministic)."""
    d = directory or plans_dir()
    return sorted(p for p in d.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def iter_plans(directory: Path | None = None, only_id: str | None = None) -> Iterator[tuple[Path, Plan | PlanError]]:
    """Every plan file with its plan, or the error that makes it unusable (others still load).

    ``only_id``: just the file of that plan id (a worker building one DAG reads one file).
    """
    for path in plan_files(directory):
        if only_id is not None and path.stem.lower() != only_id:
            continue
        try:
            yield path, load_plan(path)
        except PlanError as err:
            yield path, err
