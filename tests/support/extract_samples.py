"""Instrument files written by the tests themselves (nothing is downloaded): OME-TIFF with
tifffile, NeXus with h5py, PNG/JPEG with EXIF with Pillow, JCAMP-DX and Bruker acqus text,
and a damaged copy of each."""

from __future__ import annotations

from pathlib import Path

OME_XML = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0">
    <Microscope Manufacturer="Nikon" Model="Ti2-E"/>
    <Objective ID="Objective:0" Manufacturer="Nikon" Model="CFI Plan Apo 60x"
               NominalMagnification="60" LensNA="1.4" Immersion="Oil"/>
  </Instrument>
  <Image ID="Image:0" Name="cells">
    <AcquisitionDate>2026-03-01T10:00:00</AcquisitionDate>
    <InstrumentRef ID="Instrument:0"/>
    <ObjectiveSettings ID="Objective:0"/>
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="32" SizeY="24"
            SizeZ="3" SizeC="2" SizeT="1" PhysicalSizeX="0.108" PhysicalSizeXUnit="µm"
            PhysicalSizeY="0.108" PhysicalSizeYUnit="µm" PhysicalSizeZ="0.5"
            PhysicalSizeZUnit="µm">
      <Channel ID="Channel:0:0" Name="DAPI" SamplesPerPixel="1"/>
      <Channel ID="Channel:0:1" Name="GFP" SamplesPerPixel="1"/>
      <TiffData IFD="0" PlaneCount="6"/>
    </Pixels>
  </Image>
</OME>
"""


def write_ome_tiff(path: Path) -> Path:
    import numpy as np
    import tifffile

    data = np.arange(3 * 2 * 24 * 32, dtype=np.uint16).reshape(3, 2, 24, 32)
    tifffile.imwrite(path, data, description=OME_XML.encode("utf-8"), metadata=None)
    return path


def write_tiff(path: Path) -> Path:
    import numpy as np
    import tifffile

    tifffile.imwrite(path, np.zeros((20, 30), dtype=np.uint8))
    return path


def write_nexus(path: Path) -> Path:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["NeXus_version"] = "4.4.3"
        f.attrs["creator"] = "bench test"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["definition"] = "NXmx"
        entry["start_time"] = "2026-03-01T10:00:00Z"
        entry["title"] = "lysozyme run 7"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["name"] = "lysozyme"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.create_dataset("data", data=np.zeros((4, 16, 16), dtype=np.int32))
    return path


def write_hdf5(path: Path) -> Path:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        f.create_group("raw").create_dataset("trace", data=np.zeros(100, dtype=np.float64))
    return path


def write_png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (40, 30), "blue").save(path)
    return path


def write_jpeg_with_exif(path: Path) -> Path:
    from PIL import Image

    image = Image.new("RGB", (64, 48), "red")
    exif = Image.Exif()
    exif[271] = "Canon"
    exif[272] = "EOS R5"
    exif.get_ifd(0x8769)[36867] = "2026:03:01 10:00:00"
    image.save(path, exif=exif.tobytes())
    return path


JCAMP = """##TITLE= Benzoic acid IR
##JCAMP-DX= 4.24
##DATA TYPE= INFRARED SPECTRUM
##ORIGIN= bench test
##OWNER= public domain
##XUNITS= 1/CM
##YUNITS= TRANSMITTANCE
##FIRSTX= 400
##LASTX= 4000
##NPOINTS= 4
##XYDATA= (X++(Y..Y))
400 0.91 0.92
3400 0.50 0.48
##END=
"""

ACQUS = """##TITLE= Parameter file, TopSpin 4.1.4
##JCAMPDX= 5.0
##DATATYPE= Parameter Values
##ORIGIN= Bruker BioSpin GmbH
##OWNER= nmr
##$AQ_mod= 3
##$BF1= 400.13
##$DATE= 1772359200
##$DS= 4
##$NS= 16
##$NUC1= <1H>
##$NUC2= <off>
##$O1= 2470.97
##$P= (0..63)
10 10 20
##$PULPROG= <zg30>
##$SFO1= 400.1324710
##$SOLVENT= <CDCl3>
##$SW= 20.5524
##$TD= 65536
##$TE= 298
##END=
"""


def write_jcamp(path: Path) -> Path:
    path.write_text(JCAMP, encoding="latin-1")
    return path


def write_acqus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "acqus"
    path.write_text(ACQUS, encoding="latin-1")
    return path


def write_csv(path: Path) -> Path:
    path.write_text("wavelength;absorbance;note\n" + "".join(
        f"{400 + i};{i / 10};ok\n" for i in range(50)), encoding="utf-8")
    return path


#: name → (writer, a damaged file of the same kind, named so its extractor is chosen)
def write_corrupt(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    damaged = {
        "tiff": ("broken.tif", b"II*\x00" + b"\xff" * 60),
        "hdf5": ("broken.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 40),
        "png": ("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10),
        "jpeg": ("broken.jpg", b"\xff\xd8\xff" + b"\x00" * 5),
        "jcamp": ("broken.jdx", b"no records here\n\x00\x01"),
        "acqus": ("acqus", b"##TITLE= Parameter file\n##$GARBAGE= 1\n"),
        "csv": ("broken.csv", b"\x00\x01\x02binary\x00"),
        "zip": ("broken.zip", b"PK\x03\x04" + b"\x00" * 30),
    }
    name, data = damaged[kind]
    path = folder / name
    path.write_bytes(data)
    return path


CORRUPT_KINDS = ("tiff", "hdf5", "png", "jpeg", "jcamp", "acqus", "csv", "zip")
