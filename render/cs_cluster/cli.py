"""`cs-cluster`: the command line over the Cluster API. Errors become one line and an exit status."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from . import options
from .chart import chart_metadata, default_chart, resolve_chart
from .cluster import Cluster
from .errors import CapacityError, ConfigError, CsClusterError, UsageError
from .render import check_kubernetes_versions, prepare_validation, validated_render
from .schema import stale_files, write_generated
from .status import ClusterStatus
from .values import dump_values, secrets_path_for, write_private_file


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the worker_config YAML (a list of models)")
    parser.add_argument("--tag", required=True, help="the image tag for the models being updated")
    parser.add_argument("--project", required=True, help="the image project, e.g. your GCP project")
    parser.add_argument("--registry", help="the image registry (default gcr.io, or the --previous file's)")
    parser.add_argument("--models", nargs="+", default=[], metavar="NAME",
                        help="only these models (title or owner/title, exact) get --tag")
    parser.add_argument("--previous", type=Path, help="the values file to keep other models' tags from")
    _chart_arguments(parser)
    parser.add_argument("--release", default="cs-workers", help="the Helm release name")
    parser.add_argument("--namespace", default="cs-workers", help="the Kubernetes namespace (default cs-workers)")
    parser.add_argument("--allow-empty", action="store_true",
                        help="accept a worker_config without models (its values remove every model)")


def _chart_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chart", metavar="CHART",
                        help="a chart directory, a packaged chart (.tgz) or an oci:// reference "
                             "(default: the chart inside this package)")
    parser.add_argument("--chart-version", metavar="VERSION",
                        help="the version of an oci:// --chart, or a range (default: the newest)")
    parser.add_argument("--plain-http", action="store_true",
                        help="pull an oci:// --chart over HTTP (a registry without TLS)")


def _chart(args: argparse.Namespace) -> Path:
    """The chart the options name, as a path helm accepts (cs_cluster.chart decides)."""
    return resolve_chart(args.chart, version=args.chart_version, plain_http=args.plain_http)


def _make_cluster(
    args: argparse.Namespace, previous: Path | Literal["auto"] | None, values_file: Path | None = None
) -> Cluster:
    options.check_release(args.release)
    options.check_namespace(args.namespace)
    return Cluster(
        config=args.config, tag=args.tag, project=args.project, models=args.models, registry=args.registry,
        previous=previous, values_file=values_file, chart=_chart(args), release=args.release,
        namespace=args.namespace, allow_empty=args.allow_empty,
    )


def command_values(args: argparse.Namespace) -> int:
    cluster = _make_cluster(args, args.previous)
    split = cluster.split_values()
    if args.output:
        secrets_target = args.secrets_output or secrets_path_for(args.output)
        cluster.write_values(args.output, secrets_target)
        print(f"wrote {args.output}" + (f" and {secrets_target} (0600, keep out of git)" if split.secrets else ""),
              file=sys.stderr)
        return 0
    cluster.check()
    if split.secrets:
        if not args.secrets_output:
            raise UsageError("the config has model secrets: give -o FILE or --secrets-output FILE, "
                             "so their values go to a private file and not to standard output")
        write_private_file(args.secrets_output, dump_values(split.secrets), 0o600)
    sys.stdout.write(dump_values(split.values))
    return 0


def command_template(args: argparse.Namespace) -> int:
    if args.validate:
        check_kubernetes_versions(args.kubernetes_version)
    cluster = _make_cluster(args, args.previous)
    if args.validate:
        prepare_validation(args.kubernetes_version)  # while helm renders
        rendered = validated_render(cluster.template(), args.kubernetes_version)
        sys.stdout.write(rendered.manifests)
        print(f"{len(rendered)} objects rendered, all valid for Kubernetes {', '.join(args.kubernetes_version)}",
              file=sys.stderr)
    else:
        sys.stdout.write(cluster.template())
    return 0


def _helm_extra(args: argparse.Namespace) -> list[str]:
    """The user's values files (-f) and --helm-arg flags, checked, in the order helm gets them."""
    options.check_timeout(args.timeout)
    options.check_helm_args(args.helm_arg)
    extra: list[str] = []
    for path in args.values:
        if not path.is_file():
            raise UsageError(f"--values {path}: no such file (a values file for helm, e.g. your secrets or placement)")
        extra += ["-f", str(path)]
    return extra + list(args.helm_arg)


def command_apply(args: argparse.Namespace) -> int:
    extra = _helm_extra(args)
    cluster = _make_cluster(args, args.previous or "auto", args.values_file)
    cluster.apply(dry_run=args.dry_run, wait=not args.no_wait, timeout=args.timeout, extra=extra,
                  atomic=not args.no_atomic, capacity_check=not args.skip_capacity_check)
    return 0


# `plan`'s exit statuses, as `terraform plan -detailed-exitcode` (docs/plan.md).
PLAN_NO_CHANGES, PLAN_ERROR, PLAN_CHANGES, PLAN_BAD_INPUT, PLAN_CAPACITY = 0, 1, 2, 3, 4


def command_plan(args: argparse.Namespace) -> int:
    extra = _helm_extra(args)
    cluster = _make_cluster(args, args.previous or "auto", args.values_file)
    result = cluster.plan(extra=extra, offline=args.offline, capacity_check=not args.skip_capacity_check)
    if args.output == "json":
        print(json.dumps(result.as_json(), indent=2))
    else:
        print("\n".join(result.lines()))
    if result.capacity and result.capacity.never:
        return PLAN_CAPACITY
    return PLAN_CHANGES if result.plan.has_changes else PLAN_NO_CHANGES


def _plan_exit_code(error: CsClusterError) -> int:
    if isinstance(error, CapacityError):
        return PLAN_CAPACITY
    if isinstance(error, (ConfigError, UsageError)):
        return PLAN_BAD_INPUT
    return PLAN_ERROR


def command_rollback(args: argparse.Namespace) -> int:
    from .rollback import rollback

    options.check_release(args.release)
    options.check_namespace(args.namespace)
    options.check_timeout(args.timeout)
    values_path = args.values_file or (Path("values") / f"{args.project}.yaml" if args.project else None)
    if args.no_values_file:
        values_path = None
    elif values_path is None:
        raise UsageError("give --values-file FILE (or --project NAME for values/NAME.yaml) to restore, "
                         "or --no-values-file to roll back the release alone")
    result = rollback(args.release, args.namespace, args.revision, values_path=values_path,
                      secrets_path=secrets_path_for(values_path) if values_path else None,
                      wait=not args.no_wait, timeout=args.timeout)
    print(f"rolled back release {result.release} to revision {result.target} (now revision {result.new_revision})",
          file=sys.stderr)
    for path in result.written:
        print(f"wrote {path}", file=sys.stderr)
    for path in result.removed:
        print(f"removed {path} (revision {result.target} ran without it)", file=sys.stderr)
    return 0


def _print_status(status: ClusterStatus, output: str) -> int:
    if output == "json":
        print(json.dumps(status.as_json(), indent=2))
    else:
        print("\n".join(status.lines()))
    return status.exit_code


def command_status(args: argparse.Namespace) -> int:
    from .status_kube import release_status

    options.check_release(args.release)
    options.check_namespace(args.namespace)
    return _print_status(release_status(args.release, args.namespace, models=args.models,
                                        gateway_timeout=args.gateway_timeout), args.output)


def command_local_status(args: argparse.Namespace) -> int:
    from .status_local import local_status

    return _print_status(local_status(args.port, models=args.models, timeout=args.gateway_timeout), args.output)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=[], metavar="NAME",
                        help="only these models (title or owner/title, exact)")
    parser.add_argument("--output", choices=["text", "json"], default="text", help="text (default) or json")
    parser.add_argument("--gateway-timeout", type=options.seconds, default=10.0, metavar="SECONDS",
                        help="how long to wait for the gateway's answer (default 10)")


def command_build(args: argparse.Namespace) -> int:
    cluster = _make_cluster(args, args.previous or "auto", args.values_file)
    cluster.build(dry_run=args.dry_run, push=not args.no_push, runtime_image=args.runtime_image,
                  base_image=args.base_image, network=args.network)
    if not args.dry_run:
        print(f"wrote {cluster.values_path}", file=sys.stderr)
    return 0


def command_schema(args: argparse.Namespace) -> int:
    options.check_chart(args.chart)
    chart = args.chart or default_chart()
    if args.write:
        for path in write_generated(chart):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    stale = stale_files(chart)
    if stale:
        raise UsageError("out of date: " + ", ".join(map(str, stale)) + "; run `cs-cluster schema --write`")
    print("values.schema.json, docs/values.md and the chart's README.md match values.schema.yaml", file=sys.stderr)
    return 0


def command_local_up(args: argparse.Namespace) -> int:
    from .local import LocalCluster, run_foreground

    cluster = LocalCluster(args.config, port=args.port, comp_url=args.comp_url,
                           comp_api_token=args.comp_api_token, gateway_token=args.gateway_token, chart=_chart(args))
    return run_foreground(cluster)


def command_local_webserver(args: argparse.Namespace) -> int:
    import time

    from .standin import StandInWebserver, describe

    try:
        server = StandInWebserver(host=args.host, port=args.port, token=args.token,
                                  on_result=lambda result: print(describe(result), flush=True))
    except OSError as error:  # an address not on this machine, a port in use
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    server.start()
    print(f"webserver stand-in on {server.url}: results go to /outputs/api/ and /inputs/api/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of apply that plan takes too, so a plan is the apply it describes."""
    parser.add_argument("--no-wait", action="store_true", help="do not wait for pods to be ready (implies --no-atomic)")
    parser.add_argument("--timeout", default="10m", help="how long helm waits (default 10m)")
    parser.add_argument("-f", "--values", type=Path, action="append", default=[], metavar="FILE",
                        help="more values for helm, after the generated ones (repeatable): the worker "
                             "Secret's file, placement, overrides")
    parser.add_argument("--helm-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for helm upgrade (repeatable), e.g. --helm-arg=--history-max=20")
    parser.add_argument("--skip-capacity-check", action="store_true",
                        help="do not check that the new pods fit the live nodes")
    parser.add_argument("--no-atomic", action="store_true",
                        help="leave a failed release as it failed, instead of rolling back to the last good revision")


def _revision(text: str) -> int:
    """argparse type of a Helm revision: a positive whole number."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a revision number (1, 2, ...)")
    return int(text)


class _VersionAction(argparse.Action):
    """`--version`: this package's version, from its installed metadata, and the version of the
    chart it uses by default; read only when asked, so other commands never pay for it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from . import package_version

        try:
            chart = default_chart()
            meta = chart_metadata(chart)
            about = f"chart {meta.get('name')} {meta.get('version')} at {chart}"
        except CsClusterError as error:
            about = f"no chart: {error}"
        print(f"cs-cluster {package_version()} ({about})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cs-cluster", description="Deploy a Compute Studio compute cluster.")
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the version of cs-cluster and of its chart, then exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    values = commands.add_parser("values", help="write the Helm values for a worker_config")
    _cluster_arguments(values)
    values.add_argument("-o", "--output", type=Path, help="the values file to write (default: standard output)")
    values.add_argument("--secrets-output", type=Path,
                        help="where the models' secret values go (default: beside -o as NAME.secrets.yaml)")
    values.set_defaults(handler=command_values)

    template = commands.add_parser("template", help="print the manifests `helm template` renders")
    _cluster_arguments(template)
    template.add_argument("--no-validate", dest="validate", action="store_false",
                          help="skip validation against the strict Kubernetes schemas")
    template.add_argument("--kubernetes-version", action="append", default=None,
                          help="validate for this Kubernetes version (repeatable; default 1.33 and 1.37)")
    template.set_defaults(handler=command_template)

    for name, handler, text in (("apply", command_apply, "helm upgrade --install the cluster"),
                                ("build", command_build, "build and push model images, then write values")):
        sub = commands.add_parser(name, help=text)
        _cluster_arguments(sub)
        sub.add_argument("--values-file", type=Path,
                         help="the values file to write and use (default values/PROJECT.yaml)")
        sub.add_argument("--dry-run", action="store_true", help="print the commands, change nothing")
        sub.set_defaults(handler=handler)
    plan = commands.add_parser("plan", help="show what apply would change, and check that its pods fit; "
                                            "exit 0 nothing, 2 changes, 1 error, 3 bad input, 4 pods never fit")
    _cluster_arguments(plan)
    plan.add_argument("--values-file", type=Path,
                      help="the values file apply would write (default values/PROJECT.yaml)")
    plan.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)  # apply's; a plan changes nothing
    plan.add_argument("--offline", action="store_true",
                      help="compare with the --previous values file rendered by this chart, not the live release")
    plan.add_argument("--output", choices=["text", "json"], default="text", help="text (default) or json")
    plan.set_defaults(handler=command_plan)
    for sub in (commands.choices["apply"], plan):
        _release_arguments(sub)

    rollback = commands.add_parser("rollback", help="roll the release back and restore the values file it ran with")
    rollback.add_argument("revision", nargs="?", type=_revision, metavar="REVISION",
                          help="the revision to go back to (default: the newest earlier one that ran)")
    rollback.add_argument("--release", default="cs-workers", help="the Helm release name")
    rollback.add_argument("--namespace", default="cs-workers", help="the Kubernetes namespace (default cs-workers)")
    rollback.add_argument("--values-file", type=Path, help="the values file to restore (default values/PROJECT.yaml)")
    rollback.add_argument("--project", help="the project whose values/PROJECT.yaml to restore")
    rollback.add_argument("--no-values-file", action="store_true", help="roll back the release only")
    rollback.add_argument("--no-wait", action="store_true", help="do not wait for pods to be ready")
    rollback.add_argument("--timeout", default="10m", help="how long helm waits (default 10m)")
    rollback.set_defaults(handler=command_rollback)
    status = commands.add_parser("status", help="pods ready per model, sims queued and running, the tag running, "
                                                "the last result, Redis and the gateway; exit 0 healthy, 3 not")
    status.add_argument("--release", default="cs-workers", help="the Helm release name")
    status.add_argument("--namespace", default="cs-workers", help="the Kubernetes namespace (default cs-workers)")
    _status_arguments(status)
    status.set_defaults(handler=command_status)
    build_parser_ = commands.choices["build"]
    build_parser_.add_argument("--no-push", action="store_true", help="build and tag only")
    build_parser_.add_argument("--runtime-image", help="an existing runtime base image to build models FROM")
    build_parser_.add_argument("--base-image", metavar="IMAGE",
                               help="the base of the runtime and gateway images (default: $CS_BASE_IMAGE, "
                                    "else the Dockerfiles' python:3.11-slim-bookworm)")
    build_parser_.add_argument("--network", metavar="MODE",
                               help="docker build --network (default: host when the engine has no bridge "
                                    "network, else docker's default)")

    local = commands.add_parser("local", help="run the cluster on this machine, without Kubernetes")
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    up = local_commands.add_parser("up", help="start Redis, the gateway and every model's workers until stopped")
    up.add_argument("--config", required=True, help="the worker_config; repo_url must be local directories")
    up.add_argument("--port", type=options.port, default=5050, help="the gateway's port (default 5050)")
    up.add_argument("--comp-url", help="the webserver results are PUT to (COMP_URL)")
    up.add_argument("--comp-api-token", help="the webserver's API token (COMP_API_TOKEN)")
    up.add_argument("--gateway-token", help="the bearer token the gateway requires (default: a generated one)")
    _chart_arguments(up)
    up.set_defaults(handler=command_local_up)
    local_status = local_commands.add_parser("status", help="the status of `local up` on this machine "
                                                           "(as `cs-cluster status`)")
    local_status.add_argument("--port", type=options.port, default=5050,
                              help="the gateway's port `local up` was given (default 5050)")
    _status_arguments(local_status)
    local_status.set_defaults(handler=command_local_status)
    webserver = local_commands.add_parser("webserver", help="a stand-in webserver that prints the results it gets")
    webserver.add_argument("--host", default="127.0.0.1",
                           help="the address to listen on (default 127.0.0.1; 0.0.0.0 or an address pods "
                                "can reach when workers run in containers)")
    webserver.add_argument("--port", type=options.port, default=8000, help="the port (default 8000)")
    webserver.add_argument("--token", help="answer 401 unless results carry this COMP_API_TOKEN")
    webserver.set_defaults(handler=command_local_webserver)

    schema = commands.add_parser(
        "schema", help="check or regenerate values.schema.json, docs/values.md and the chart's README.md")
    schema.add_argument("--write", action="store_true", help="regenerate instead of checking")
    schema.add_argument("--chart", type=Path)
    schema.set_defaults(handler=command_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:
        # plan's 2 means "changes"; a mistake in its options is bad input (3) there, not argparse's 2.
        if arguments[:1] == ["plan"] and stop.code == 2:
            raise SystemExit(PLAN_BAD_INPUT) from None
        raise
    if getattr(args, "kubernetes_version", "unset") is None:
        args.kubernetes_version = ["1.33", "1.37"]
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # here, so that a closed standard output is caught below
        return code
    except CsClusterError as error:
        print(f"cs-cluster: error: {error}", file=sys.stderr)
        return _plan_exit_code(error) if args.command == "plan" else error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Standard output closed early (`| head`): stop quietly, as a writer killed by SIGPIPE
        # would; pointing stdout at /dev/null keeps the interpreter's last flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:
        # A file or socket the user named that cannot be used: one line, never a traceback.
        where = f": {error.filename}" if error.filename else ""
        print(f"cs-cluster: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
