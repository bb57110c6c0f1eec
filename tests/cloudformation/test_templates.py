"""What the templates say, for the properties moto does not keep (bucket policy, public
access block, lifecycle, queue time limits, update settings) and for the design rules of
docs/cloudformation.md. moto deployments are tested in test_moto_deploy.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from snakemake_executor_plugin_awsbatch.stack import OUTPUT_KEYS
from tests.cloudformation.conftest import ALL_TEMPLATES, NESTED, REPO, ROOT, template


def resources(name: str, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template(name)["Resources"].items() if v["Type"] == kind}


def walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def user_data_script() -> str:
    """The user data with the template defaults: each condition false, each Ref `<Name>`."""
    data = resources("launch-template.yaml", "AWS::EC2::LaunchTemplate")["LaunchTemplate"]
    parts = data["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(
        p if isinstance(p, str) else p["Fn::If"][2] if "Fn::If" in p else f"<{p['Ref']}>"
        for p in parts
    )


def user_data_parts() -> dict[str | None, str]:
    """MIME part file name (None for the host setup) -> its shell script."""
    script = user_data_script()
    boundary = "--==SNAKEMAKE-AWSBATCH=="
    assert script.endswith(f"\n{boundary}--\n")
    parts = {}
    for part in script.removesuffix(f"{boundary}--\n").split(f"\n{boundary}\n")[1:]:
        headers, body = part.split("\n\n", 1)
        name = re.search(r'filename="([^"]+)"', headers)
        parts[name.group(1) if name else None] = body
    return parts


# --- the root and its contract ----------------------------------------------------------


def test_root_passes_every_nested_parameter() -> None:
    """Nothing is left to a nested default: the root is the one place to set a value."""
    root = template(ROOT.name)["Resources"]
    assert set(NESTED) == {k for k, v in root.items() if v["Type"] == "AWS::CloudFormation::Stack"}
    for logical, filename in NESTED.items():
        assert root[logical]["Properties"]["TemplateURL"] == filename
        passed = set(root[logical]["Properties"]["Parameters"])
        assert passed == set(template(filename)["Parameters"]), logical


def test_root_outputs_carry_the_plugin_contract() -> None:
    outputs = template(ROOT.name)["Outputs"]
    for key in OUTPUT_KEYS.values():
        assert key in outputs and "Condition" not in outputs[key], key


def test_every_parameter_is_documented() -> None:
    docs = (REPO / "docs" / "cloudformation.md").read_text()
    docs = docs.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    for path in ALL_TEMPLATES:
        for name, spec in template(path.name).get("Parameters", {}).items():
            assert len(spec.get("Description", "")) > 10, f"{path.name}: {name}"
    for name, spec in template(ROOT.name)["Parameters"].items():
        default = str(spec.get("Default", ""))
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"docs/cloudformation.md lacks a table row for {name}"
        assert (f"`{default}`" if default else "(empty)") in row, f"{name}: default {default!r}"


# --- storage ------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_and_tls_only() -> None:
    bucket = resources("storage.yaml", "AWS::S3::Bucket")["DataBucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    policy = resources("storage.yaml", "AWS::S3::BucketPolicy")["DataBucketPolicy"]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tls = next(s for s in statements if s["Sid"] == "DenyInsecureTransport")
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(tls["Resource"]) == 2  # the bucket and its objects


def test_run_scratch_expires() -> None:
    bucket = resources("storage.yaml", "AWS::S3::Bucket")["DataBucket"]["Properties"]
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    scratch = rules["expire-run-scratch"]
    assert scratch["Status"] == "Enabled"
    assert scratch["Prefix"] == {"Fn::Sub": "${StagingPrefix}/${RunScratchPrefix}"}
    assert scratch["ExpirationInDays"] == {"Ref": "RunScratchExpirationDays"}
    storage = template("storage.yaml")["Parameters"]
    assert storage["RunScratchPrefix"]["Default"] == "_awsbatch/runs/"


def test_efs_is_reachable_only_from_the_batch_group() -> None:
    group = resources("storage.yaml", "AWS::EC2::SecurityGroup")["EfsSecurityGroup"]["Properties"]
    assert group["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 2049,
            "ToPort": 2049,
            "SourceSecurityGroupId": {"Ref": "BatchSecurityGroupId"},
            "Description": "NFS (TLS) from the Batch instances",
        }
    ]
    fs = resources("storage.yaml", "AWS::EFS::FileSystem")["FileSystem"]["Properties"]
    assert fs["Encrypted"] is True
    assert resources("storage.yaml", "AWS::EFS::AccessPoint")


# --- network ------------------------------------------------------------------------------


def test_nothing_is_open_to_the_world() -> None:
    for path in ALL_TEMPLATES:
        for node in walk(template(path.name)):
            if isinstance(node, dict) and "SecurityGroupIngress" in node:
                for rule in node["SecurityGroupIngress"]:
                    assert rule.get("CidrIp") not in ("0.0.0.0/0",), path.name
                    assert rule.get("CidrIpv6") != "::/0", path.name
                    assert rule.get("FromPort") != 22, path.name
        kinds = {r["Type"] for r in template(path.name)["Resources"].values()}
        if "AWS::EC2::SecurityGroupIngress" in kinds:
            for res in resources(path.name, "AWS::EC2::SecurityGroupIngress").values():
                assert "CidrIp" not in res["Properties"], path.name


def test_new_vpc_has_private_subnets_nat_and_s3_endpoint() -> None:
    net = template("network.yaml")["Resources"]
    for name in ("PrivateSubnet1", "PrivateSubnet2"):
        assert net[name]["Properties"]["MapPublicIpOnLaunch"] is False
    assert net["PrivateDefaultRoute"]["Properties"]["NatGatewayId"] == {"Ref": "NatGateway"}
    s3 = net["S3GatewayEndpoint"]["Properties"]
    assert s3["VpcEndpointType"] == "Gateway"
    assert s3["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]


# --- launch template and AMI --------------------------------------------------------------


def test_launch_template_requires_imdsv2_and_encrypts_gp3() -> None:
    lt = resources("launch-template.yaml", "AWS::EC2::LaunchTemplate")["LaunchTemplate"]
    assert "LaunchTemplateName" not in lt["Properties"]
    data = lt["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    root, scratch = data["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeType"] == "gp3" and root["Ebs"]["Encrypted"] is True
    scratch = scratch["Fn::If"][1]
    assert scratch["DeviceName"] == "/dev/xvdb"
    assert scratch["Ebs"]["VolumeType"] == "gp3" and scratch["Ebs"]["Encrypted"] is True


def test_ami_defaults_to_amazon_linux_2023() -> None:
    params = template("launch-template.yaml")["Parameters"]
    assert params["ImageType"]["Default"] == "ECS_AL2023"
    assert "ECS_AL2" not in params["ImageType"]["AllowedValues"]
    assert params["RecommendedAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert "amazon-linux-2023" in params["RecommendedAmiId"]["Default"]
    assert params["AmiId"]["Default"] == ""


def test_user_data_sets_up_scratch_without_downloading() -> None:
    assert user_data_script().startswith("MIME-Version: 1.0")
    script = user_data_parts()[None]
    assert "SCRATCH=/scratch" in script
    assert 'mount -o noatime "$device" "$SCRATCH"' in script
    assert "Instance Storage" in script  # instance-store NVMe is preferred
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in script
    for fetch in ("curl", "wget", "dnf ", "yum ", "aws ", "pip ", "git clone", "pull"):
        assert fetch not in script, fetch


def test_user_data_installs_the_job_runtimes_in_a_second_part() -> None:
    """The exact headers: the local sandbox picks this part by its file name."""
    assert (
        "\n--==SNAKEMAKE-AWSBATCH==\n"
        'Content-Type: text/x-shellscript; charset="us-ascii"\n'
        'Content-Disposition: attachment; filename="snakemake-awsbatch-runtime.sh"\n\n'
        "#!/bin/bash\n"
    ) in user_data_script()
    assert list(user_data_parts()) == [None, "snakemake-awsbatch-runtime.sh"]
    script = user_data_parts()["snakemake-awsbatch-runtime.sh"]
    assert script.startswith(
        '#!/bin/bash\nRUNTIME_REPOSITORY="<RuntimeRepository>"\nRUNTIME_KEYS=""\n'
        'RUNTIME_ROOT="<RuntimeRoot>"\n'
    )
    assert 'CONTAINER_CLI="${CONTAINER_CLI:-docker}"' in script
    assert 'HOST_LOG="${HOST_LOG:-/var/log/snakemake-awsbatch-host.log}"' in script
    # It downloads only the runtime images (and the AWS CLI for the ECR login, if missing).
    for fetch in ("curl", "wget", "yum ", "aws s3", "pip ", "git clone"):
        assert fetch not in script, fetch
    assert [line.strip() for line in script.splitlines() if "dnf install" in line] == [
        "step dnf install -y awscli-2 || return 1"
    ]
    lt = resources("launch-template.yaml", "AWS::EC2::LaunchTemplate")["LaunchTemplate"]
    parts = lt["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    assert {"Ref": "RuntimeRepository"} in parts and {"Ref": "RuntimeRoot"} in parts
    assert {"Fn::If": ["WithRuntimes", {"Fn::Join": [" ", {"Ref": "RuntimeKeys"}]}, ""]} in parts


def test_user_data_leaves_room_for_batch() -> None:
    """EC2 takes at most 16 KB of user data (before base64), and Batch adds its own part."""
    assert len(user_data_script().encode()) < 12_000


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("part", [None, "snakemake-awsbatch-runtime.sh"])
def test_user_data_script_is_valid_bash(part: str | None) -> None:
    shell = user_data_parts()[part]
    assert shell.startswith("#!/bin/bash\n")
    result = subprocess.run(
        ["bash", "-n"], input=shell, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_hyperthreading_off_is_one_line_of_the_script() -> None:
    lt = resources("launch-template.yaml", "AWS::EC2::LaunchTemplate")["LaunchTemplate"]
    parts = lt["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    switch = next(p for p in parts if isinstance(p, dict))
    assert switch == {
        "Fn::If": [
            "HyperthreadingOff",
            "DISABLE_HYPERTHREADING=true\n",
            "DISABLE_HYPERTHREADING=false\n",
        ]
    }
    assert "devices/system/cpu/smt/control" in user_data_script()


# --- job runtimes for tool-only images ----------------------------------------------------

RUNTIME_PARAMETERS = {
    "RuntimeRepository": ("String", ""),
    "RuntimeKeys": ("CommaDelimitedList", ""),
    "RuntimeRoot": ("String", "/opt/snakemake-awsbatch/runtimes"),
}
WITH_RUNTIMES = {
    "Fn::And": [
        {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "RuntimeKeys"}]}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "RuntimeRepository"}, ""]}]},
    ]
}


def test_runtime_parameters_are_wired_from_the_root() -> None:
    root = template(ROOT.name)
    for name, (kind, default) in RUNTIME_PARAMETERS.items():
        assert (root["Parameters"][name]["Type"], root["Parameters"][name]["Default"]) == (
            kind,
            default,
        ), name
    (group,) = [
        g
        for g in root["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        if g["Label"]["default"] == "Job runtime for tool-only images"
    ]
    assert group["Parameters"] == list(RUNTIME_PARAMETERS)
    passed = {
        "RuntimeRepository": {"Ref": "RuntimeRepository"},
        "RuntimeKeys": {"Fn::Join": [",", {"Ref": "RuntimeKeys"}]},
        "RuntimeRoot": {"Ref": "RuntimeRoot"},
    }
    for logical, names in (
        ("LaunchTemplate", ["RuntimeRepository", "RuntimeKeys", "RuntimeRoot"]),
        ("ComputeEnvironments", ["RuntimeRepository", "RuntimeKeys"]),
    ):
        parameters = root["Resources"][logical]["Properties"]["Parameters"]
        assert {name: parameters[name] for name in names} == {n: passed[n] for n in names}
        nested = template(NESTED[logical])
        for name in names:
            assert nested["Parameters"][name]["Type"] == RUNTIME_PARAMETERS[name][0]
        assert nested["Conditions"]["WithRuntimes"] == WITH_RUNTIMES, logical
    assert root["Conditions"]["WithRuntimes"] == WITH_RUNTIMES


def test_runtime_root_output() -> None:
    outputs = template(ROOT.name)["Outputs"]
    assert outputs["RuntimeRoot"] == {
        "Description": outputs["RuntimeRoot"]["Description"],
        "Value": {"Ref": "RuntimeRoot"},
    }
    assert outputs["RuntimeKeys"]["Condition"] == "WithRuntimes"
    assert outputs["RuntimeKeys"]["Value"] == {"Fn::Join": [" ", {"Ref": "RuntimeKeys"}]}


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "RuntimeRepository",
            [
                "",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/snakemake-awsbatch-runtime",
                "localhost:5000/team/runtime",
                "localhost/snakemake-awsbatch-runtime",  # the local sandbox's
                "ghcr.io/org/snakemake_awsbatch-runtime",
                "runtime",
            ],
            [
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/runtime:tag",
                "registry.example.com/Runtime",
                "registry.example.com/",
                "registry.example.com/runtime; rm -rf /",
                'runtime"',
                "localhost:5000",
            ],
        ),
        (
            "RuntimeKeys",
            ["", "snakemake9.21.0-awsbatch0.1.0-90c0b065ddaf", "_k", "K.1"],
            [".hidden", "-k", "k k", "k/k", "k$(id)", "k" * 129],
        ),
        (
            "RuntimeRoot",
            ["/opt/snakemake-awsbatch/runtimes", "/mnt/runtimes/", "/x"],
            ["", "/", "opt/runtimes", "/opt/run times", "/opt/$HOME", '/opt/"x'],
        ),
    ],
)
def test_runtime_parameters_refuse_what_would_break_the_script(
    name: str, good: list[str], bad: list[str]
) -> None:
    """The values land in the boot script; CloudFormation checks each (each list item of
    RuntimeKeys) against AllowedPattern, the same in every template that declares it."""
    patterns = {
        path.name: template(path.name)["Parameters"][name].get("AllowedPattern")
        for path in ALL_TEMPLATES
        if name in template(path.name).get("Parameters", {})
    }
    assert patterns[ROOT.name] is not None
    assert patterns["launch-template.yaml"] == patterns[ROOT.name]
    for value in good:
        assert re.fullmatch(patterns[ROOT.name], value), value
    for value in bad:
        assert not re.fullmatch(patterns[ROOT.name], value), value


def test_every_compute_environment_tags_its_runtimes() -> None:
    envs = resources("compute-environments.yaml", "AWS::Batch::ComputeEnvironment")
    for name, env in envs.items():
        assert env["Properties"]["ComputeResources"]["Tags"]["snakemake-awsbatch-runtimes"] == {
            "Fn::If": [
                "WithRuntimes",
                {"Fn::Join": [" ", {"Ref": "RuntimeKeys"}]},
                {"Ref": "AWS::NoValue"},
            ]
        }, name


# --- compute environments and queues ------------------------------------------------------


def test_compute_environments_update_in_place() -> None:
    envs = resources("compute-environments.yaml", "AWS::Batch::ComputeEnvironment")
    assert set(envs) == {"SpotEnvironment", "OnDemandEnvironment", "MultiNodeEnvironment"}
    for name, env in envs.items():
        props = env["Properties"]
        assert "ComputeEnvironmentName" not in props, name
        assert props["ReplaceComputeEnvironment"] is False, name
        assert props["UpdatePolicy"]["JobExecutionTimeoutMinutes"] == {
            "Ref": "UpdateTimeoutMinutes"
        }
        assert props["ServiceRole"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}, name
        compute = props["ComputeResources"]
        assert compute["MinvCpus"] == 0, name
        assert "SpotIamFleetRole" not in compute, name
        assert compute["LaunchTemplate"]["Version"] == {"Ref": "LaunchTemplateVersion"}, name
        assert compute["Ec2Configuration"] == [
            {"ImageType": {"Ref": "ImageType"}, "ImageIdOverride": {"Ref": "ImageId"}}
        ]
    assert envs["SpotEnvironment"]["Properties"]["ComputeResources"]["AllocationStrategy"] == (
        "SPOT_PRICE_CAPACITY_OPTIMIZED"
    )
    for name in ("OnDemandEnvironment", "MultiNodeEnvironment"):
        compute = envs[name]["Properties"]["ComputeResources"]
        assert compute["Type"] == "EC2" and compute["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"


def test_multi_node_environment_is_one_subnet_in_a_cluster_group() -> None:
    res = template("compute-environments.yaml")["Resources"]
    assert res["PlacementGroup"]["Properties"] == {"Strategy": "cluster"}
    compute = res["MultiNodeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["Subnets"] == [{"Ref": "PlacementSubnetId"}]
    assert compute["PlacementGroup"] == {"Ref": "PlacementGroup"}


def test_queues_cancel_jobs_stuck_runnable() -> None:
    queues = resources("job-queues.yaml", "AWS::Batch::JobQueue")
    assert set(queues) == {"DefaultQueue", "PriorityQueue", "MultiNodeQueue"}
    for name, queue in queues.items():
        actions = queue["Properties"]["JobStateTimeLimitActions"]
        assert {a["Reason"] for a in actions} == {
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
            "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
            "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        }, name
        for action in actions:
            assert action["State"] == "RUNNABLE" and action["Action"] == "CANCEL"
            assert action["MaxTimeSeconds"] == {"Ref": "RunnableTimeLimitSeconds"}


# --- iam ----------------------------------------------------------------------------------


def test_no_spot_fleet_role_and_no_service_role_by_default() -> None:
    iam = template("iam.yaml")
    roles = resources("iam.yaml", "AWS::IAM::Role")
    assert set(roles) == {"InstanceRole", "JobRole", "ExecutionRole", "ServiceRole"}
    assert roles["ServiceRole"]["Condition"] == "WithServiceRole"
    assert iam["Parameters"]["CreateServiceRole"]["Default"] == "false"
    assert "spotfleet" not in str(iam).lower()


def test_instance_role_can_pull_the_runtime_images_from_ecr() -> None:
    """AmazonEC2ContainerServiceforEC2Role grants ecr:GetAuthorizationToken,
    ecr:BatchGetImage and ecr:GetDownloadUrlForLayer, which the boot script's pull needs."""
    instance = resources("iam.yaml", "AWS::IAM::Role")["InstanceRole"]["Properties"]
    assert {
        "Fn::Sub": (
            "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
        )
    } in instance["ManagedPolicyArns"]


def test_job_role_reaches_only_the_bucket() -> None:
    job = resources("iam.yaml", "AWS::IAM::Role")["JobRole"]["Properties"]
    assert "ManagedPolicyArns" not in job
    (policy,) = job["Policies"]
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] in ({"Ref": "BucketArn"}, {"Fn::Sub": "${BucketArn}/*"})
        assert all(re.fullmatch(r"s3:[A-Za-z]+", action) for action in statement["Action"])
