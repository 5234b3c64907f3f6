"""A module that must never be imported by a reward service because a request named it: importing it
writes the file named by $TRIPWIRE_PATH."""

import os

with open(os.environ["TRIPWIRE_PATH"], "w") as marker:
    marker.write("imported")


def score(completion: str, reference: str, **_: object) -> float:
    return 1.0
