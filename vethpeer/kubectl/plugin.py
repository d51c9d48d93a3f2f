"""`kubectl vethpeer`: which / table / doctor, answered by the vethpeer agents through the API server.

    kubectl vethpeer which pod/NAME -n NS      kubectl vethpeer which NS/NAME
    kubectl vethpeer table --node NODE         kubectl vethpeer table -A
    kubectl vethpeer doctor --node NODE
    kubectl vethpeer history NS/NAME           kubectl vethpeer which veth82eaaa7 --at -2h

Exit status: 0 answered (nodes that did not answer are status lines on stderr), 1 error,
2 usage, 3 pod not found, 7 no agent answered.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from urllib.parse import quote, urlencode

from ..environment import Environment
from ..errors import ExitStatus, NotFound, SourceFailed, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see: {self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    from ..commands.options import moment

    top, common = _Parser(add_help=False), _Parser(add_help=False)
    add_common(top, defaults=True)
    add_common(common, defaults=False)
    parser = _Parser(prog="kubectl vethpeer", description=__doc__.splitlines()[0], parents=[top])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    which = commands.add_parser(
        "which", parents=[common], help="a pod's interfaces, host-side veths and bridges"
    )
    which.add_argument("target", metavar="pod/NAME | NS/NAME | NAME")
    which.add_argument(
        "--at", type=moment, metavar="T", help="the binding at time T, from the agents' journals"
    )
    which.add_argument("--node", metavar="NODE", help="with --at: ask only this node's agent")
    history = commands.add_parser(
        "history", parents=[common], help="every binding a target had, from the journals"
    )
    history.add_argument("target", metavar="TARGET")
    history.add_argument("--since", type=moment, metavar="T", help="only bindings alive at or after T")
    history.add_argument("--until", type=moment, metavar="T", help="only bindings alive at or before T")
    history.add_argument("--node", metavar="NODE", help="ask only this node's agent")
    for name, text in (
        ("table", "every workload interface of a node, or of every node"),
        ("doctor", "findings"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("--node", metavar="NODE", help="one node")
        if name == "doctor":
            sub.add_argument("--all", dest="show_info", action="store_true", help="info findings too")
    return parser


def add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before or after the command (`kubectl vethpeer --debug table` = `... table
    --debug`): the top-level parser sets the defaults; each command's parser repeats the options
    with SUPPRESS defaults, so a value given before the command is not reset after it."""
    from ..commands.options import positive_seconds
    from .fanout import AGENT_NAMESPACE, AGENT_SELECTOR

    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "-n", "--namespace", metavar="NS", default=d(None), help="the pods' Kubernetes namespace"
    )
    parser.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=d(False),
        help="every namespace (table: every node)",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=d(None),
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument("--context", metavar="NAME", default=d(None), help="kubeconfig context")
    parser.add_argument("-o", "--output", choices=("table", "wide", "json"), default=d("table"))
    parser.add_argument(
        "--timeout", type=positive_seconds, default=d(5.0), metavar="S", help="per node (default 5)"
    )
    parser.add_argument(
        "--debug", action="store_true", default=d(False), help="tracebacks instead of one-line errors"
    )
    parser.add_argument(
        "--agent-namespace", default=d(AGENT_NAMESPACE), metavar="NS", help=f"default {AGENT_NAMESPACE}"
    )
    parser.add_argument(
        "--agent-selector", default=d(AGENT_SELECTOR), metavar="LABELS", help="the agents' pod labels"
    )


def pod_target(target: str, namespace: str | None, default: str) -> tuple[str, str]:
    """(namespace, name) of ``pod/NAME`` (with -n), ``NS/NAME`` or ``NAME``."""
    head, sep, tail = target.partition("/")
    if sep and head in ("pod", "pods", "po"):
        return namespace or default, tail
    if sep:
        if namespace and namespace != head:
            raise UsageError(f"{target} is in namespace {head}, not {namespace}")
        return head, tail
    return namespace or default, target


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..render.safe import shown
    from .cluster import Cluster, pod_path
    from .fanout import agents, agents_and_nodes, fan_out
    from .render import cluster_document, write_findings, write_json, write_table

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    cluster = Cluster(args.kubeconfig, args.context)
    try:
        wide, as_json = args.output == "wide", args.output == "json"
        if args.command == "history" or (args.command == "which" and args.at is not None):
            from . import history

            target = args.target
            if target.startswith(("pod/", "pods/", "po/")):
                target = "/".join(pod_target(target, args.namespace, cluster.namespace))
            return history.run(cluster, args, target, env)
        if args.command == "which":
            namespace, name = pod_target(args.target, args.namespace, cluster.namespace)
            reply = cluster.get(pod_path(namespace, name), args.timeout)
            if reply.status == 404:
                raise NotFound(f'pod "{name}" not found in namespace "{namespace}"')
            pod = (
                cluster.get_json(pod_path(namespace, name), args.timeout)
                if reply.status != 200
                else reply.json()
            )
            node = pod.get("spec", {}).get("nodeName")
            if not node:
                raise NotFound(f"pod {namespace}/{name} is not scheduled on a node yet")
            if pod["spec"].get("hostNetwork"):
                line = f"pod {namespace}/{name} on node {node} uses the host network: it has no veth"
                env.stdout.write(shown(line) + "\n")
                return ExitStatus.SUCCESS
            found = agents(cluster, args.agent_namespace, args.agent_selector, args.timeout, node=node)
            path = (
                f"api/v1/which/{quote(f'{namespace}/{name}', safe='')}?{urlencode({'namespace': namespace})}"
            )
            answers = fan_out(cluster, found, [node], path, args.timeout)
            if as_json and answers[0].document is not None:
                write_json(answers[0].document, env)
            else:
                write_table(answers, env, wide=wide)
            return ExitStatus.SUCCESS if answers[0].status == "ok" else ExitStatus.SOURCE_FAILED
        if args.node is None and not args.all_namespaces:
            raise UsageError(f"{args.command} needs --node NODE, or -A for every node")
        query = {"namespace": args.namespace} if args.namespace else {}
        path = f"api/v1/{args.command}" + (f"?{urlencode(query)}" if query else "")
        found, nodes = agents_and_nodes(
            cluster, args.agent_namespace, args.agent_selector, args.timeout, args.node
        )
        answers = fan_out(cluster, found, nodes, path, args.timeout)
        if as_json:
            write_json(cluster_document(args.command, answers), env)
            for answer in answers:
                if answer.status != "ok":
                    env.warn(f"node {answer.node}: {answer.status}: {answer.detail}")
        elif args.command == "table":
            write_table(answers, env, wide=wide)
        else:
            write_findings(answers, env, show_info=args.show_info)
        if answers and all(a.status != "ok" for a in answers):
            raise SourceFailed("no vethpeer agent answered")
        return ExitStatus.SUCCESS
    finally:
        cluster.close()


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    from ..cli import Outcome, finish

    env = env or Environment()

    def action(outcome: Outcome) -> int:
        from ..commands.options import split_argv

        args = build_parser().parse_args(split_argv(sys.argv[1:] if argv is None else argv)[0])
        outcome.debug = args.debug
        return int(run(args, env))

    return finish("kubectl vethpeer", env, action)


if __name__ == "__main__":
    sys.exit(main())
