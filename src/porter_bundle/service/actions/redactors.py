"""What a run's :class:`~porter_bundle.service.redact.Redactor` masks: the secret values of its
inputs, as resolved for a new run or as far as they can be known again for a recorded one."""

from __future__ import annotations

from porter.bundle.v1.run_pb2 import Run
from porter.bundle.v1.value_set_pb2 import CredentialSet
from porter_bundle.errors import FailedPrecondition
from porter_bundle.service.actions.planning import find_set
from porter_bundle.service.inputs import ResolvedInputs, render
from porter_bundle.service.redact import Redactor
from porter_bundle.service.runs import RunService
from porter_bundle.service.sources import SourceResolver
from porter_bundle.service.value_sets import ValueSetService


def inputs_redactor(inputs: ResolvedInputs) -> Redactor:
    """Masks a run's credential values and sensitive parameter values."""
    sensitive = (render(inputs.parameters[n]) for n in inputs.sensitive)
    return Redactor([*inputs.credentials.values(), *sensitive])


def stored_redactor(
    runs: RunService,
    credential_sets: ValueSetService[CredentialSet],
    resolver: SourceResolver,
    run: Run,
) -> Redactor:
    """Masks what a run recorded before a restart used (blocking): its sensitive parameter
    values (stored with the run) and, as far as they resolve again now, its credentials (from
    its credential sets; command sources are not run again)."""
    used = runs.run_parameters(run.id)
    secrets = [render(used[n]) for n in run.sensitive_parameters if n in used]
    for set_name in run.credential_sets:
        entries = find_set(credential_sets, run.namespace, set_name, "credentials")
        for entry in entries or ():
            if entry.source.WhichOneof("kind") == "command":
                continue
            try:
                value = resolver.resolve(f"credential {entry.name!r}", entry.source, run.namespace)
            except FailedPrecondition:
                continue
            secrets.append(render(value))
    return Redactor(secrets)


__all__ = ["inputs_redactor", "stored_redactor"]
