"""Small pipeline helpers shared by the cores."""

from amaranth.hdl import Signal


__all__ = ["delayed"]


def delayed(m, value, stages, *, en, name):
    """``value`` after ``stages`` registers that load while ``en`` is high (``value`` itself
    for 0 stages); the registers are named ``{name}{index}``."""
    for index in range(stages):
        register = Signal.like(value, name=f"{name}{index}")
        with m.If(en):
            m.d.sync += register.eq(value)
        value = register
    return value
