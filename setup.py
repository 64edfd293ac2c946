from pathlib import Path

from setuptools import setup

here = Path(__file__).parent
version = {}
exec((here / "presenced" / "__init__.py").read_text(), version)

setup(
    name="presenced",
    version=version["__version__"],
    description="A standalone web presence service for XMPP servers",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=["presenced", "presenced.sandbox", "presenced.images", "twisted.plugins"],
    package_dir={"presenced.images": "images"},
    package_data={"presenced": ["widget.js"], "presenced.images": ["*.png"], "twisted.plugins": ["presenced_plugin.py"]},
    install_requires=[
        "Twisted[tls]>=24.3",
        "wokkel>=18.0.0",
        "hyperlink>=21.0",
        "constantly>=15.1",
        "scramp>=1.4",
        "prometheus_client>=0.20",
    ],
    extras_require={"test": ["pytest>=8", "pytest-twisted>=1.14"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Communications :: Chat",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
