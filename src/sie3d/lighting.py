"""How sie3d's own pictures of an avatar are lit -- previews, videos and the evaluation's turntable views (the
in-photo composite is always lit as the photo was). Kept free of heavy imports, so that the web server checks a
request without loading the renderer.

"studio": `sie3d.render.renderer.STUDIO_LIGHT`, a key light above the face and 19 degrees to its left: it models
the face's relief, and facex reads expressions better under it than under a light in line with the face -- though
it lights the two sides unalike: seen from the lit side (+30 degrees) the head looks less like the photo than from
the other (docs/RESULTS.md, "The studio light's side").
"photo": the light estimated from the photo with the texture (`HeadTextures.sh_lighting`, head space), the one its
de-lighting divided out -- the head as it was lit in the photo. Closer to the photo on an evenly lit portrait; on a
photo lit from one side the light's fit, made from the normals the photo sees, gives the sides it did not see
glare and colour casts.
"""

from __future__ import annotations

from sie3d.errors import UsageError

LIGHTS = ("studio", "photo")


def check_light(light: str) -> str:
    """`light` if it is one of `LIGHTS`; a `UsageError` naming the choices otherwise."""
    if light not in LIGHTS:
        raise UsageError(f"unknown light {light!r}", f"use one of: {', '.join(LIGHTS)}")
    return light
