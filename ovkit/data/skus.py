"""From 3D models to products (SKUs): fine product type, colourways, colour names, synthetic price.

Sweet Home 3D categories are rooms (Kitchen, Living room, ...), not product types, so a visual
*fine type* (chair, table, lamp, ...) is derived from each model's name and tags. Every model gives
several colourways: the dominant material is recoloured, so siblings share a shape and differ in
colour -- the near-duplicate products that a semantic ID must keep apart.
"""

from __future__ import annotations

import re

import numpy as np

# Named colours for colourways and for the colour attribute (kit choice: 12 everyday names).
PALETTE = {
    "black": (0.08, 0.08, 0.09),
    "white": (0.93, 0.93, 0.91),
    "grey": (0.55, 0.56, 0.58),
    "brown": (0.45, 0.29, 0.16),
    "beige": (0.86, 0.78, 0.62),
    "red": (0.78, 0.12, 0.12),
    "orange": (0.93, 0.50, 0.12),
    "yellow": (0.92, 0.80, 0.15),
    "green": (0.20, 0.55, 0.25),
    "teal": (0.10, 0.50, 0.52),
    "blue": (0.15, 0.30, 0.75),
    "purple": (0.50, 0.22, 0.60),
    "pink": (0.92, 0.55, 0.70),
}

# Fine types and the head nouns that signal them (kit choice; order breaks ties only).
FINE_TYPES = {
    "lamp": "lamp light lantern chandelier candle lamppost spotlight flashlight",
    "table": "table desk workbench vanity island",
    "chair": "chair armchair stool bench ottoman lounge puff hammock wheelchair",
    "sofa": "sofa couch futon",
    "bed": "bed crib mattress",
    "storage": "cabinet wardrobe cupboard dresser chest drawers bookcase shelves shelf locker "
    "safe rack trunck trunk box crate basket bin trashcan dustbin container",
    "plant": "plant tree cactus bamboo orchids tulips lily flowers flower yucca ficus bonsai bush "
    "hedge pine palm maple cypress poplar acacia beech spathiphyllum blossom",
    "appliance": "oven fridge refrigerator stove cooktop cooker hood microwave machine dryer "
    "freezer boiler heater radiator fan toaster blender mixer kettle brewer press maker fryer "
    "furnace grill cooler squeezer scale unit",
    "electronics": "tv television laptop imac ibook phone iphone tablet printer speaker radio "
    "stereo camera screen projector playstation joystick keyboard headphones station base "
    "intercom player cctv control amplifier detector",
    "tableware": "cup mug glass bottle plate bowl fork knife spoon pan pot jar tray teapot "
    "creamer shaker cutlery utensils servers stand tools pottery flacon",
    "food": "bread butter milk cake hot dog hamburger apples chicken steak fries sugar sushi "
    "fruits salad yogurt",
    "bathroom": "toilets toilet washbasin basin bath bathtub shower stall bidet urinal sink "
    "jacuzzi lavatory potty faucet",
    "vehicle": "car focus truck bus van bike bicycle scooter motorbike sedan sport suv beetle leon "
    "308 cc scenic chevrolet lift stroller tricycle skateboard rowboat r6 biplane",
    "toy_sport": "toy doll puzzle teddy cube chessboard game ball goal trampoline swing seesaw "
    "racket football basketball dart flipper xylophone horse treadmill bat tower bench net "
    "sandpit hut house",
    "clothing": "shoes sneakers slippers bootie mocassin dress suit skirt trousers short jacket "
    "cap hat helmet glove clothes handbag briefcase backpack suitcase watch ring sunglasses",
    "electrical": "plug switch socket dimmer",
    "tool": "tool saw drill hammer screwdriver grinder pliers shovel broom mower ladder tape "
    "scissors ruler stapler pencil marker penbox extinguisher wheelbarrow reel brush sponge comb",
    "decor": "vase frame clock rug carpet doormat bathmat curtain blind towel tatami aquarium "
    "fireplace chimney piano guitar book newspaper calendar gift board",
    "outdoor": "railing fence column pool parking slot rails crossing arrow ahead right cone "
    "hydrant mailbox rock sidewalk fountain tent barnum",
}
_NOUN_TO_TYPE = {noun: kind for kind, nouns in FINE_TYPES.items() for noun in nouns.split()}


def fine_type(name: str, tags: list[str] = ()) -> str:
    """Product type from a model name (and tags): the right-most word that names a type.

    English compounds put the head noun last ("Bedside table" is a table, "Desk lamp" a lamp);
    anything after "with" or a comma qualifies it ("Chair with cushion").
    """
    for text in [name, *tags]:
        head = re.split(r",| with | on | and ", text.lower())[0]
        for word in reversed(re.findall(r"[a-z0-9]+", head)):
            for candidate in (word, word.rstrip("s")):
                if candidate in _NOUN_TO_TYPE:
                    return _NOUN_TO_TYPE[candidate]
    return "other"


def colour_name(rgb) -> str:
    """Nearest palette name to an RGB colour (0..1), by distance in a rough perceptual space."""
    rgb = np.asarray(rgb, float)[:3]
    names = list(PALETTE)
    ref = np.array([PALETTE[n] for n in names])
    weights = np.array([0.30, 0.59, 0.11]) ** 0.5  # luminance weights: green counts most
    return names[int(np.argmin((((ref - rgb) * weights) ** 2).sum(1)))]


def dominant_group(mesh: dict) -> np.ndarray:
    """Boolean mask over material parts: the largest-area part plus parts of nearly its colour."""
    v, f, part, colours = mesh["vertices"], mesh["faces"], mesh["part"], mesh["colours"]
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    part_area = np.bincount(part, weights=area, minlength=len(colours))
    main = int(np.argmax(part_area))
    return np.linalg.norm(colours[:, :3] - colours[main, :3], axis=1) < 0.12


def colourways(mesh: dict, n: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """``n`` colourways of a model: (colour name, per-part RGBA colours).

    Colourway 0 keeps the original materials; the others recolour the dominant group with a
    palette colour that no earlier colourway of this model used (kit choice), keeping each part's
    brightness relative to the group so shading detail survives.
    """
    original = mesh["colours"].astype(np.float64)
    group = dominant_group(mesh)
    base = original[group, :3].mean(0)
    taken = [colour_name(base)]
    ways = [(taken[0], original)]
    free = [c for c in PALETTE if c not in taken]
    for name in rng.permutation(free)[: max(0, n - 1)]:
        colours = original.copy()
        scale = (original[group, :3].mean(1) + 0.05) / (base.mean() + 0.05)
        colours[group, :3] = np.clip(np.outer(scale, PALETTE[name]), 0, 1)
        ways.append((str(name), colours))
    return ways


# Price bands by fine type: median price in EUR (kit choice, synthetic, documented as such).
BASE_PRICE = {
    "lamp": 60, "table": 250, "chair": 120, "sofa": 700, "bed": 600, "storage": 300,
    "plant": 35, "appliance": 400, "electronics": 350, "tableware": 15, "food": 8,
    "bathroom": 350, "vehicle": 15000, "toy_sport": 40, "clothing": 60, "electrical": 12,
    "tool": 30, "decor": 45, "outdoor": 200, "other": 50,
}


def synthetic_price(kind: str, size_cm: tuple[float, float, float], creator_premium: float,
                    rng: np.random.Generator) -> float:
    """Synthetic price: type median × size factor × creator premium × log-normal noise."""
    volume = max(float(np.prod(size_cm)), 1.0)
    size_factor = (volume / 1e5) ** 0.15  # bigger objects of a type cost a little more
    price = BASE_PRICE[kind] * size_factor * creator_premium * rng.lognormal(0.0, 0.35)
    return float(round(max(price, 1.0), 2))
