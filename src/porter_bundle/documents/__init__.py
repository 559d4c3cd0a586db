"""Porter's document formats: Installation, CredentialSet and ParameterSet files.

Porter users and the Porter operator keep these as YAML or JSON files (``schemaType``,
``schemaVersion``, ...). This package reads them (:mod:`.parse`), checks them against
Porter's JSON schemas and supported schema versions (:mod:`.validate`, schemas in
``schema/``) and maps them to and from the API resources (:mod:`.mapping`). It knows
nothing of the store or of gRPC. :func:`read_one` and :func:`porter_value` give a document
as Porter's Go types read it (:mod:`.scalars`: numbers and booleans as text where a string
belongs).
"""

from porter_bundle.documents.mapping import (
    Format,
    Resource,
    from_credential_set,
    from_installation,
    from_parameter_set,
    is_withheld,
    plain,
    render,
    to_credential_set,
    to_installation,
    to_parameter_set,
    to_resource,
)
from porter_bundle.documents.parse import DOCUMENT_FIELD, ParsedDocument, parse_one, parse_stream
from porter_bundle.documents.scalars import porter_value, read_one
from porter_bundle.documents.validate import (
    DEFAULT_VERSIONS,
    SUPPORTED_VERSIONS,
    DocumentKind,
    SchemaCheck,
    Validated,
    check_schema_version,
    detect_kind,
    validate,
)

__all__ = [
    "DEFAULT_VERSIONS",
    "DOCUMENT_FIELD",
    "SUPPORTED_VERSIONS",
    "DocumentKind",
    "Format",
    "ParsedDocument",
    "Resource",
    "SchemaCheck",
    "Validated",
    "check_schema_version",
    "detect_kind",
    "from_credential_set",
    "from_installation",
    "from_parameter_set",
    "is_withheld",
    "parse_one",
    "parse_stream",
    "plain",
    "porter_value",
    "read_one",
    "render",
    "to_credential_set",
    "to_installation",
    "to_parameter_set",
    "to_resource",
    "validate",
]
