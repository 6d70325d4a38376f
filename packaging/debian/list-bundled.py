"""Print name, version and license of each Python distribution in this interpreter's environment.

debian/rules runs it with the private environment's interpreter to write
/usr/share/doc/fowld/bundled-packages.txt.
"""

import importlib.metadata


def license_of(meta) -> str:
    expression = meta.get("License-Expression")
    if expression:
        return expression
    classified = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classified:
        return ", ".join(classified)
    # Some put the whole license text here: its first line names it well enough.
    text = (meta.get("License") or "").strip().splitlines()
    return text[0][:72] if text else "see its dist-info directory"


def main() -> None:
    print("Python packages in /usr/lib/fowld, each with its license text in its dist-info directory:\n")
    rows = sorted(
        (dist.metadata["Name"], dist.version, license_of(dist.metadata))
        for dist in importlib.metadata.distributions()
    )
    width = max(len(name) for name, _, _ in rows)
    for name, version, license in sorted(rows, key=lambda row: row[0].lower()):
        print(f"{name:<{width}}  {version:<12}  {license}")


if __name__ == "__main__":
    main()
