"""Orientation geometry: scalar-first unit quaternions and point-group fundamental domains.

Importable without torch; the scoring and streaming code use it too.
"""

from .quaternions import canonical, from_rotation, multiply, normalize, parse_quat, rotation_angle, to_rotation
from .scoring import relative_errors
from .symmetry import (
    are_equivalent,
    component_range,
    component_span,
    domain_max_angle,
    icosahedral_group,
    in_fundamental_domain,
    project_to_fundamental,
    rotation_angle_cdf,
    sample_fundamental,
    symmetry_group,
)

__all__ = [
    "are_equivalent",
    "canonical",
    "component_range",
    "component_span",
    "domain_max_angle",
    "from_rotation",
    "icosahedral_group",
    "in_fundamental_domain",
    "multiply",
    "normalize",
    "parse_quat",
    "project_to_fundamental",
    "relative_errors",
    "rotation_angle",
    "rotation_angle_cdf",
    "sample_fundamental",
    "symmetry_group",
    "to_rotation",
]
