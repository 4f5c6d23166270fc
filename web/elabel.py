"""The EU e-label of a lot: what ``templates/elabel.html`` shows, read from the lot's
version 2 document.

The page is what the "Ingredients" code on an EU wine label opens (Regulation (EU)
2021/2117, Commission notice C/2023/1190): the ingredients in the reader's language with
the allergens emphasised, the allergens spelled out in words, the nutrition declaration per
100 ml in the order of Regulation (EU) No 1169/2011 (Annex XV), the alcohol strength, and
the producer. Nothing here knows who reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from web.render import Page


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name for "mark, translate later")
    """Mark ``message`` for the catalogs; it is translated where it is shown."""
    return message


#: Annex II allergens (the lot document's codes) => their name on a label, in English (the msgid).
ALLERGENS: dict[str, str] = {
    "cereals_containing_gluten": N_("Cereals containing gluten"),
    "crustaceans": N_("Crustaceans"),
    "eggs": N_("Eggs"),
    "fish": N_("Fish"),
    "peanuts": N_("Peanuts"),
    "soybeans": N_("Soybeans"),
    "milk": N_("Milk"),
    "nuts": N_("Nuts"),
    "celery": N_("Celery"),
    "mustard": N_("Mustard"),
    "sesame": N_("Sesame seeds"),
    "sulphites": N_("Sulphites"),
    "lupin": N_("Lupin"),
    "molluscs": N_("Molluscs"),
}

#: Words that show an ingredient comes from an allergen, in the languages of the documents' translations
#: (English, French, Simplified Chinese). An ingredient naming a declared allergen is emphasised.
ALLERGEN_WORDS: dict[str, tuple[str, ...]] = {
    "cereals_containing_gluten": ("gluten", "wheat", "barley", "rye", "oat", "blé", "orge", "seigle", "avoine",
                                  "麸质", "小麦", "大麦", "黑麦", "燕麦"),
    "crustaceans": ("crustacean", "shrimp", "prawn", "crab", "lobster", "crustacé", "crevette", "crabe", "homard",
                    "甲壳", "虾", "蟹"),
    "eggs": ("egg", "ovalbumin", "lysozyme", "œuf", "oeuf", "蛋", "溶菌酶"),
    "fish": ("fish", "isinglass", "poisson", "ichtyocolle", "鱼"),
    "peanuts": ("peanut", "arachide", "cacahuète", "花生"),
    "soybeans": ("soy", "soja", "大豆"),
    "milk": ("milk", "casein", "lactose", "lait", "caséine", "乳", "奶"),
    "nuts": ("almond", "hazelnut", "walnut", "cashew", "pecan", "pistachio", "amande", "noisette", "noix",
             "cajou", "pistache", "坚果", "杏仁", "榛子", "核桃"),
    "celery": ("celery", "céleri", "芹菜"),
    "mustard": ("mustard", "moutarde", "芥"),
    "sesame": ("sesame", "sésame", "芝麻"),
    "sulphites": ("sulphite", "sulfite", "sulphur dioxide", "sulfur dioxide", "dioxyde de soufre",
                  "anhydride sulfureux", "亚硫酸", "二氧化硫"),
    "lupin": ("lupin", "羽扇豆"),
    "molluscs": ("mollusc", "mollusk", "mollusque", "软体动物"),
}

#: The nutrition declaration after energy, in Annex XV's order: (field, name, is an "of which" line).
NUTRIENTS: tuple[tuple[str, str, bool], ...] = (
    ("fat", N_("Fat"), False),
    ("saturates", N_("of which saturates"), True),
    ("carbohydrate", N_("Carbohydrate"), False),
    ("sugars", N_("of which sugars"), True),
    ("protein", N_("Protein"), False),
    ("salt", N_("Salt"), False),
)


@dataclass(frozen=True)
class Ingredient:
    text: str
    allergen: bool


@dataclass(frozen=True)
class Nutrient:
    name: str
    amount: str
    sub: bool = False


@dataclass(frozen=True)
class ELabel:
    """Everything the e-label shows, in the reader's language."""

    wine: str
    vintage: int
    ingredients: list[Ingredient]
    allergens: list[str]
    energy: str
    nutrients: list[Nutrient]
    alcohol: str
    volume: str
    producer: str
    address: str
    #: The bottle's verification page, when the e-label was opened for a bottle.
    verify_url: str | None


def _grams(page: Page, value: float | int | str) -> str:
    """An amount in grams as the reader writes it: ``2.6 g``, ``2,6 g``, ``<0.5 g`` (negligible)."""
    if isinstance(value, str) and value.startswith("<"):
        return "<" + page.number(Decimal(value[1:])) + "\u00a0g"
    return page.number(Decimal(str(value))) + "\u00a0g"


def _names_allergen(text: str, allergens: list[str]) -> bool:
    folded = text.casefold()
    return any(word in folded for code in allergens for word in ALLERGEN_WORDS.get(code, ()))


def build(doc: dict[str, Any], page: Page, verify_url: str | None = None) -> ELabel:
    """The e-label of the version 2 lot document ``doc`` in ``page``'s language (the
    document's translation in that language, else its English text)."""
    translated = doc.get("translations", {}).get(page.language) or doc.get("translations", {}).get("en") or {}
    allergens = [code for code in doc.get("allergens", []) if code in ALLERGENS]
    ingredients = translated.get("ingredients") or doc["ingredients"]
    nutrition = doc["nutrition_per_100ml"]
    contact = doc.get("producer_contact", {})
    return ELabel(
        wine=translated.get("wine") or doc["wine"],
        vintage=int(doc.get("vintage") or 0),
        ingredients=[Ingredient(text, _names_allergen(text, allergens)) for text in ingredients],
        allergens=[page.gettext(ALLERGENS[code]) for code in allergens],
        energy=f"{page.number(nutrition['energy_kj'])}\u00a0kJ / {page.number(nutrition['energy_kcal'])}\u00a0kcal",
        nutrients=[Nutrient(page.gettext(name), _grams(page, nutrition[field]), sub)
                   for field, name, sub in NUTRIENTS],
        alcohol=page.number(Decimal(str(doc["alcohol_percent"]))) + "\u00a0% vol",
        volume=page.number(int(doc["volume_ml"])) + "\u00a0ml",
        producer=contact.get("name") or doc["producer"],
        address=contact.get("address", ""),
        verify_url=verify_url,
    )


#: The separator of the ingredient and allergen lists per language (Chinese uses the enumeration comma).
SEPARATORS: dict[str, str] = {"zh-CN": "、"}

#: What the e-label says when it cannot show a lot: HTTP status => (tone, headline, advice).
PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: ("warn", N_("This code cannot be read"),
          N_("The link is incomplete or was changed. Scan the code on the bottle's label again.")),
    404: ("info", N_("We do not know this wine"),
          N_("The code you scanned does not match any wine issued here. Check that it is the code on the "
             "bottle's label, or ask the seller.")),
    503: ("info", N_("This page is not available right now"), N_("Please try again in a few minutes.")),
}
