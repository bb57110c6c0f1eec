"""Deploy `cloudformation/` into moto the way the root stack would.

On AWS, `cloudformation/core-environment.yaml` is one stack whose nested stacks pass values
to each other through `!GetAtt Nested.Outputs.X`. moto creates nested stacks but cannot
resolve their outputs, so here every nested template becomes a top-level stack
(`<name>-<LogicalId>`, in dependency order), each given exactly the parameters the root
would pass it: the root's `Parameters:` mapping for that stack is evaluated with the root's
parameter values and the outputs of the stacks created before it. A last stack named
`<name>` then carries the root's Outputs, evaluated the same way, so that
`--awsbatch-stack <name>` reads the same keys from moto as from AWS.

The wiring comes from the root template itself, so a wrong wiring there breaks the sandbox
too; the evaluator supports only the intrinsic functions the root uses and fails loudly on
anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudformation import CloudFormationClient

ROOT_TEMPLATE = "core-environment.yaml"
DEFAULT_STACK_NAME = "snakemake-awsbatch"
# moto creates a compute environment only with an explicit service role; on AWS the
# parameter stays "false" and Batch uses its service-linked role.
SANDBOX_DEFAULTS = {"CreateServiceRole": "true"}
_PLACEHOLDER = {"Type": "AWS::CloudFormation::WaitConditionHandle"}
_FINAL_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE")


class CfnDeployError(RuntimeError):
    """The templates could not be deployed into moto; the message says which stack and why."""


class _NoValue:
    """AWS::NoValue: drops the enclosing key or list item."""


NO_VALUE = _NoValue()


# --- YAML with CloudFormation's short-form tags (!Ref, !GetAtt, !Sub, ...) ----------------


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical, _, attribute = value.partition(".")
        value = [logical, attribute]
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation YAML template as plain data, short tags turned into long form."""
    data = yaml.load(path.read_text(), Loader=_CfnLoader)
    if not isinstance(data, dict):
        raise CfnDeployError(f"{path}: not a CloudFormation template")
    return data


# --- evaluation of the root's intrinsic functions ------------------------------------------


@dataclass
class _Context:
    values: dict[str, Any]  # parameters and pseudo parameters
    conditions: dict[str, Any]  # the template's raw condition definitions
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # nested stack outputs
    _decided: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            if name not in self.conditions:
                raise CfnDeployError(f"root template: unknown condition {name!r}")
            self._decided[name] = bool(self.evaluate(self.conditions[name]))
        return self._decided[name]

    def output(self, logical: str, attribute: str) -> str:
        key = attribute.removeprefix("Outputs.")
        if logical not in self.outputs or key == attribute:
            raise CfnDeployError(f"root template: cannot resolve GetAtt {logical}.{attribute}")
        if key not in self.outputs[logical]:
            raise CfnDeployError(f"stack {logical} has no output {key!r} (root template wiring)")
        return self.outputs[logical][key]

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.evaluate(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref", "Condition")):
            evaluated = {key: self.evaluate(value) for key, value in node.items()}
            return {key: value for key, value in evaluated.items() if value is not NO_VALUE}
        ((function, arg),) = node.items()
        if function == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            if arg not in self.values:
                raise CfnDeployError(f"root template: Ref to unknown parameter {arg!r}")
            return self.values[arg]
        if function == "Condition":
            return self.condition(arg)
        if function == "Fn::GetAtt":
            return self.output(arg[0], arg[1])
        if function == "Fn::If":
            name, when_true, when_false = arg
            return self.evaluate(when_true if self.condition(name) else when_false)
        if function == "Fn::Equals":
            left, right = (self.evaluate(item) for item in arg)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self.evaluate(arg[0])
        if function == "Fn::And":
            return all(self.evaluate(item) for item in arg)
        if function == "Fn::Or":
            return any(self.evaluate(item) for item in arg)
        if function == "Fn::Join":
            separator, items = arg
            return separator.join(str(item) for item in self.evaluate(items))
        if function == "Fn::Split":
            separator, text = arg
            return str(self.evaluate(text)).split(separator)
        if function == "Fn::Select":
            index, items = arg
            return self.evaluate(items)[int(self.evaluate(index))]
        if function == "Fn::Sub":
            return self._sub(arg)
        raise CfnDeployError(f"root template: {function} is not supported by the sandbox deploy")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        local = {key: self.evaluate(value) for key, value in variables.items()}
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in local:
                out.append(str(local[name]))
            elif "." in name:
                logical, _, attribute = name.partition(".")
                out.append(self.output(logical, attribute))
            else:
                out.append(str(self.evaluate({"Ref": name})))
        out.append(rest)
        return "".join(out)


def _as_parameter_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def _root_parameter_values(root: dict[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    declared: dict[str, Any] = root.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise CfnDeployError(
            f"{ROOT_TEMPLATE} has no parameter {', '.join(unknown)}; "
            "see docs/cloudformation.md for the parameters"
        )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            raw: Any = given[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raise CfnDeployError(f"{ROOT_TEMPLATE}: parameter {name} has no default; pass it")
        is_list = spec.get("Type", "").startswith(("CommaDelimitedList", "List<"))
        values[name] = str(raw).split(",") if is_list else raw
    return values


def _nested_stacks_in_order(root: dict[str, Any]) -> list[str]:
    """Logical ids of the nested stacks, each after every stack whose outputs it uses."""
    resources: dict[str, Any] = root["Resources"]
    nested = [
        name for name, res in resources.items() if res["Type"] == "AWS::CloudFormation::Stack"
    ]

    def uses(node: Any) -> set[str]:
        if isinstance(node, list):
            return set().union(*(uses(item) for item in node)) if node else set()
        if not isinstance(node, dict):
            return set()
        found: set[str] = set()
        for key, value in node.items():
            if key == "Fn::GetAtt":
                found.add(value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(part.split(".")[0] for part in text.split("${")[1:] if "." in part)
            found |= uses(value)
        return found

    needs = {}
    for name in nested:
        depends = resources[name].get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        needs[name] = (uses(resources[name]) | set(depends)) & set(nested)
    ordered: list[str] = []
    while len(ordered) < len(nested):
        ready = [n for n in nested if n not in ordered and needs[n] <= set(ordered)]
        if not ready:
            raise CfnDeployError(
                f"{ROOT_TEMPLATE}: the nested stacks depend on each other in a cycle"
            )
        ordered.append(ready[0])
    return ordered


# --- deployment --------------------------------------------------------------------------


def _stack_status(cfn: CloudFormationClient, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def _create_stack(
    cfn: CloudFormationClient, name: str, body: str, parameters: Mapping[str, str]
) -> dict[str, str]:
    cfn.create_stack(
        StackName=name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
        OnFailure="DO_NOTHING",
    )
    cfn.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    if stack["StackStatus"] not in _FINAL_STATES:
        raise CfnDeployError(
            f"stack {name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}"
        )
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}


def nested_stack_name(stack_name: str, logical_id: str) -> str:
    """Name of the top-level stack that stands in for the root's nested stack `logical_id`."""
    return f"{stack_name}-{logical_id}"


def deploy_core_environment(
    session: boto3.Session,
    templates_dir: Path | str,
    parameters: Mapping[str, str] | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    endpoint_url: str | None = None,
) -> str:
    """Deploy the core environment into moto; return the name to pass to `--awsbatch-stack`.

    `parameters` are root-template parameters (docs/cloudformation.md); unspecified ones
    take the template defaults, and CreateServiceRole defaults to "true" because moto needs
    a service role. Idempotent: when the final stack already exists it is returned as is.
    """
    templates = Path(templates_dir)
    root = load_template(templates / ROOT_TEMPLATE)
    cfn: CloudFormationClient = session.client("cloudformation", endpoint_url=endpoint_url)
    if _stack_status(cfn, stack_name) in _FINAL_STATES:
        return stack_name

    given = {**SANDBOX_DEFAULTS, **(parameters or {})}
    account = session.client("sts", endpoint_url=endpoint_url).get_caller_identity()["Account"]
    region = session.region_name or "us-east-1"
    values = _root_parameter_values(root, given)
    values.update(
        {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
    )
    context = _Context(values=values, conditions=root.get("Conditions", {}))

    resources = root["Resources"]
    created: list[str] = []
    for logical in _nested_stacks_in_order(root):
        resource = resources[logical]
        if "Condition" in resource and not context.condition(resource["Condition"]):
            context.outputs[logical] = {}
            continue
        properties = resource["Properties"]
        child = templates / properties["TemplateURL"]
        child_parameters = {
            key: _as_parameter_value(value)
            for key, value in context.evaluate(properties.get("Parameters", {})).items()
        }
        name = nested_stack_name(stack_name, logical)
        if _stack_status(cfn, name) in _FINAL_STATES:
            stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
            outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
        else:
            outputs = _create_stack(cfn, name, child.read_text(), child_parameters)
        context.outputs[logical] = outputs
        created.append(name)

    root_outputs: dict[str, Any] = {}
    for key, output in root.get("Outputs", {}).items():
        if "Condition" in output and not context.condition(output["Condition"]):
            continue
        root_outputs[key] = {
            "Description": output.get("Description", key),
            "Value": _as_parameter_value(context.evaluate(output["Value"])),
        }
    final = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"Sandbox stand-in for {ROOT_TEMPLATE}: the root's outputs, wired from the stacks "
            + ", ".join(created)
        ),
        "Metadata": {"NestedStacks": created},
        "Resources": {"RootOutputsOnly": _PLACEHOLDER},
        "Outputs": root_outputs,
    }
    _create_stack(cfn, stack_name, json.dumps(final), {})
    return stack_name
