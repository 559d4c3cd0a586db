from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation


def test_create_and_list(stub):
    inst = Installation(
        namespace="dev",
        name="mybuns",
        bundle=BundleReference(repository="localhost:5000/mybuns", version="v0.1.2"),
    )
    created = stub.CreateInstallation(pb.CreateInstallationRequest(installation=inst)).installation
    assert created.id
    listed = stub.ListInstallations(pb.ListInstallationsRequest(namespace="dev"))
    assert [i.name for i in listed.installations] == ["mybuns"]
    assert listed.total_size == 1
