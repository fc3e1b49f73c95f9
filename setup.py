"""The optional C extension; everything else is in pyproject.toml. Without a compiler the
build goes on and `pipeline.wirescan` uses its pure-Python functions."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pipeline._wirescan",
            ["pipeline/_wirescan.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
