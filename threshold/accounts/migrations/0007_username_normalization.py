"""Usernames stored in one spelling (``accounts.models.normalize_username``): NFKC, lower
case, the domain through IDNA and back to its Unicode form. Before, only spaces around them
and the case were, so one address typed precomposed and pasted decomposed (or in full-width
letters, or with its domain's ``xn--`` form) made two people.

Each username not spelled so already is rewritten, unless that would make it another
person's: then none of them is changed, and the migration prints them all, for an
administrator to keep the one that is the person's and remove the others. Until then, a
username typed finds only the one already spelled so, if any (passkeys still sign each in).
Nothing is undone when migrating back: each spelling was the same username."""

import unicodedata
from typing import Any

from django.db import migrations

BATCH = 1000


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text.lower())


def _domain(domain: str) -> str:
    folded = _folded(domain)
    try:
        return _folded(folded.encode("idna").decode("idna"))
    except UnicodeError:
        return folded


def _normalized(username: str) -> str:
    # accounts.models.normalize_username as of this migration.
    text = unicodedata.normalize("NFKC", username).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        return _folded(text)
    return f"{_folded(local)}@{_domain(domain)}"


def renormalize(apps: Any, schema_editor: Any) -> None:
    User = apps.get_model("accounts", "User")
    people = User.objects.using(schema_editor.connection.alias)
    # The few usernames not spelled as they now are: pk and username, by the new spelling.
    renamed: dict[str, list[tuple[int, str]]] = {}
    for pk, username in people.order_by("pk").values_list("pk", "username").iterator(BATCH):
        normalized = _normalized(username)
        if normalized != username:
            renamed.setdefault(normalized, []).append((pk, username))
    keys = list(renamed)
    taken: set[str] = set()
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        taken.update(people.filter(username__in=batch).values_list("username", flat=True))
    changes: list[Any] = []
    clashes: list[tuple[str, list[str]]] = []
    # A spelling the column cannot hold (NFKC may lengthen it: "ﬃ" is "ffi") is left as it
    # was, and said, as a clash is: PostgreSQL's cast would cut it short without a word.
    longest = User._meta.get_field("username").max_length
    too_long = [holders for normalized, holders in renamed.items() if len(normalized) > longest]
    renamed = {n: h for n, h in renamed.items() if len(n) <= longest}
    for normalized, holders in renamed.items():
        if len(holders) == 1 and normalized not in taken:
            changes.append(User(pk=holders[0][0], username=normalized))
        else:
            spellings = [username for _, username in holders]
            clashes.append((normalized, [normalized] * (normalized in taken) + spellings))
    people.bulk_update(changes, ["username"], batch_size=BATCH)
    if clashes:
        print(
            f"\n  accounts 0007: {len(clashes)} username(s) left as they were: spelled as "
            "usernames now are (NFKC, lower case, the domain's Unicode form), each is the "
            "same as another person's. Typed, it finds only the one already spelled so. "
            "Keep the person's account of each, and remove the others:"
        )
        for normalized, spellings in sorted(clashes):
            print(f"    {normalized!a}: {', '.join(ascii(name) for name in spellings)}")
    if too_long:
        print(
            f"\n  accounts 0007: {len(too_long)} username(s) left as they were: spelled as "
            f"usernames now are, each would be over {longest} characters. Typed, it finds no one:"
        )
        for holders in too_long:
            print(f"    {', '.join(ascii(name) for _, name in holders)}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_user_name_key"),
    ]

    operations = [
        migrations.RunPython(renormalize, migrations.RunPython.noop),
    ]
