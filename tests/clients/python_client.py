"""The official Python `kubernetes` client against Skiff: for every manifest of a directory
(one object per file, namespace first), create it, list it, patch it, watch the patch come by,
and at the end delete everything and see it go. Prints `ok KIND apiVersion` or
`FAIL KIND apiVersion: why` per kind and exits non-zero when any failed.

Usage: python_client.py KUBECONFIG MANIFEST_DIR
"""

import os
import sys
import time

import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.dynamic.exceptions import NotFoundError


def load(manifest_dir):
    objs = []
    for name in sorted(os.listdir(manifest_dir)):
        if name.endswith(".yaml"):
            with open(os.path.join(manifest_dir, name)) as f:
                objs.append(yaml.safe_load(f))
    return objs


def label(obj):
    return f"{obj['kind']} {obj['apiVersion']}"


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def round_trip(dyn, obj):
    """Create, list, patch and watch one object."""
    res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    name = obj["metadata"]["name"]
    ns = obj["metadata"].get("namespace")
    created = res.create(body=obj, namespace=ns)
    expect(created.metadata.name == name, f"created {created.metadata.name}")
    expect(created.metadata.uid, "no uid")
    expect(created.kind == obj["kind"], f"created kind {created.kind}")

    listed = res.get(namespace=ns, label_selector="suite=e2e")
    names = [i.metadata.name for i in listed.items]
    expect(name in names, f"{name} not listed: {names}")
    rv = listed.metadata.resourceVersion
    expect(rv, "list without resourceVersion")

    patched = res.patch(
        body={"metadata": {"labels": {"patched": "python"}}},
        name=name,
        namespace=ns,
        content_type="application/merge-patch+json",
    )
    expect(patched.metadata.labels["patched"] == "python", "patch not applied")
    expect(patched.metadata.labels["suite"] == "e2e", "patch dropped a label")
    got = res.get(name=name, namespace=ns)
    expect(got.metadata.labels["patched"] == "python", "patch not stored")

    # A watch from the list's resourceVersion replays the patch.
    seen = []
    for event in res.watch(
        namespace=ns, resource_version=rv, field_selector=f"metadata.name={name}", timeout=10
    ):
        seen.append(event["type"])
        labels = event["raw_object"]["metadata"].get("labels", {})
        if event["type"] == "MODIFIED" and labels.get("patched") == "python":
            break
    else:
        raise AssertionError(f"watch from {rv} did not show the patch: {seen}")


def delete(dyn, obj):
    res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    name = obj["metadata"]["name"]
    ns = obj["metadata"].get("namespace")
    res.delete(name=name, namespace=ns)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            res.get(name=name, namespace=ns)
        except NotFoundError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} still there 30 s after delete")


def typed(api_client):
    """The generated typed APIs, with kubernetes.watch, on a ConfigMap and a Deployment."""
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-typed", namespace="py"), data={"k": "v"}
    )
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    core.create_namespaced_config_map("py", cm)
    rv = core.list_namespaced_config_map("py").metadata.resource_version
    core.patch_namespaced_config_map("py-typed", "py", {"data": {"k": "w"}})
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=10
    ):
        if event["type"] == "MODIFIED" and event["object"].data == {"k": "w"}:
            w.stop()
            break
    else:
        raise AssertionError("typed watch did not show the patch")
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-deploy", namespace="py"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(
                    runtime_class_name="wasmtime",
                    containers=[client.V1Container(name="main", image="test-guest:p2")],
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment("py", dep)
    apps.patch_namespaced_deployment_scale("py-deploy", "py", {"spec": {"replicas": 3}})
    got = apps.read_namespaced_deployment("py-deploy", "py")
    expect(got.spec.replicas == 3, f"scale not applied: {got.spec.replicas}")
    names = [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items]
    expect("py-deploy" in names, f"py-deploy not listed: {names}")
    apps.delete_namespaced_deployment("py-deploy", "py")
    core.delete_namespaced_config_map("py-typed", "py")
    expect(
        all(c.metadata.name != "py-typed" for c in core.list_namespaced_config_map("py").items),
        "py-typed listed after delete",
    )


def main():
    kubeconfig, manifest_dir = sys.argv[1], sys.argv[2]
    api_client = config.new_client_from_config(config_file=kubeconfig)
    dyn = dynamic.DynamicClient(api_client)
    failed = {}
    objs = load(manifest_dir)
    for obj in objs:
        try:
            round_trip(dyn, obj)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next kind
            failed[label(obj)] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    for obj in reversed(objs):
        if label(obj) in failed:
            continue
        try:
            delete(dyn, obj)
        except Exception as e:  # noqa: BLE001
            failed[label(obj)] = f"delete: {type(e).__name__}: {e}".splitlines()[0][:300]
    for obj in objs:
        if label(obj) in failed:
            print(f"FAIL {label(obj)}: {failed[label(obj)]}")
        else:
            print(f"ok {label(obj)}")
    try:
        typed(api_client)
        print("ok typed CoreV1Api/AppsV1Api")
    except Exception as e:  # noqa: BLE001
        failed["typed"] = str(e)
        print(f"FAIL typed CoreV1Api/AppsV1Api: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
