"""The project's kinds as lightkube resources, defined once: the operator, the plugin, the
lineage store and the dashboard all read and write them through these (defining a kind also
registers it with lightkube's codecs)."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from .constants import (
    CC_KIND,
    CC_PLURAL,
    GROUP,
    MDEP_KIND,
    MDEP_PLURAL,
    RECORD_KIND,
    RECORD_PLURAL,
    VERSION,
)

ModelDeploymentResource = create_namespaced_resource(GROUP, VERSION, MDEP_KIND, MDEP_PLURAL)
ChampionChallengerResource = create_namespaced_resource(GROUP, VERSION, CC_KIND, CC_PLURAL)
LineageRecordResource = create_namespaced_resource(GROUP, VERSION, RECORD_KIND, RECORD_PLURAL)
