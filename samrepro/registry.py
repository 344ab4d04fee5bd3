"""Named registries of the method's choices: allocations, saliencies, estimators
(docs/architecture.md). Each entry is a function with the fields that say what it needs; code
outside a registry asks those fields and never branches on a name."""

from __future__ import annotations

from samrepro.errors import UserError


class Registry(dict):
    """name → entry, in the order registered; `entry(function, **needs)` makes an entry."""

    def __init__(self, kind: str, entry):
        super().__init__()
        self.kind, self.entry = kind, entry

    def register(self, name: str, **needs):
        """Decorator: add the function it decorates under `name`."""
        def add(function):
            self[name] = self.entry(function, **needs)
            return function
        return add

    def get_checked(self, name: str):
        """The entry `name`, or a UserError listing the known names."""
        if name not in self:
            raise UserError(f"unknown {self.kind} {name!r}: choose from {', '.join(self)}")
        return self[name]
