"""Image sets: bundled photos, folders with manifests, VOC annotations, composites, clear errors."""
import pytest
from PIL import Image

from study.images import bundled_images, composite, folder_images, image_set, load_image, voc_images


def test_bundled_photos_have_labels_and_boxes_inside_them():
    items = bundled_images()
    ids = {item.image_id for item in items}
    assert {"chelsea", "coffee", "rocket", "astronaut", "camera", "china", "flower", "grace_hopper"} == ids
    for item in items:
        assert item.image.mode == "RGB" and item.boxes
        for x0, y0, x1, y1 in item.boxes:
            assert 0 <= x0 < x1 <= item.image.width and 0 <= y0 < y1 <= item.image.height
    coffee = next(i for i in items if i.image_id == "coffee")
    assert coffee.labels[0] == 967  # espresso


def test_boxes_scale_onto_maps():
    chelsea = next(i for i in bundled_images() if i.image_id == "chelsea")  # 451 x 300
    assert chelsea.boxes_at((451, 300)) == list(chelsea.boxes)
    (x0, y0, x1, y1), = chelsea.boxes_at((224, 224))
    assert (y0, y1) == (0, 224) and 14 <= x0 <= 15 and 213 <= x1 <= 214


def test_folder_with_manifest(tmp_path):
    Image.new("RGB", (40, 20), "red").save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (10, 10), "blue").save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "manifest.toml").write_text('[[image]]\npath = "a.png"\nid = "red"\nlabels = ["espresso"]\n'
                                            'boxes = [[0, 0, 20, 10]]\n')
    items = folder_images(tmp_path)
    assert [i.image_id for i in items] == ["red", "sub/b"]
    assert items[0].labels == (967,) and items[0].boxes_at((80, 40)) == [(0, 0, 40, 20)]
    assert image_set("sub", root=tmp_path)[0].image_id == "b"


def test_voc_annotations(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "JPEGImages" / "x.jpg")
    (tmp_path / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>40</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>dog</name><bndbox><xmin>51</xmin><ymin>1</ymin><xmax>100</xmax><ymax>30</ymax></bndbox></object>"
        "</annotation>")
    (item,) = voc_images(tmp_path / "JPEGImages", tmp_path / "Annotations")
    assert item.boxes == ((0, 10, 40, 50), (50, 0, 100, 30)) and item.box_names == ("cat", "dog")
    assert image_set("voc:JPEGImages:Annotations", root=tmp_path)[0].image_id == "x"
    (tmp_path / "Annotations" / "x.xml").write_text("<annotation><object><name>cat</name></object>")
    with pytest.raises(ValueError, match="cannot parse VOC annotation"):
        voc_images(tmp_path / "JPEGImages", tmp_path / "Annotations")


def test_clear_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        folder_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="leaves the study folder"):
        image_set("../elsewhere", root=tmp_path)
    with pytest.raises(ValueError, match="voc:"):
        image_set("voc:only-one", root=tmp_path)


def test_composite_has_known_boxes_and_both_labels():
    items = {i.image_id: i for i in bundled_images()}
    both = composite(items["chelsea"], items["coffee"])
    assert both.image.size == (448, 224)
    assert both.boxes == ((0, 0, 224, 224), (224, 0, 448, 224))
    assert both.labels == (items["chelsea"].labels[0], 967)
    # the left half is the cat photo's centre crop, the right half the espresso's
    assert both.image.getpixel((10, 100)) != both.image.getpixel((300, 100))
    with pytest.raises(ValueError, match="labelled"):
        composite(items["astronaut"], items["coffee"])


def test_the_shipped_imagenet_names_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    from study.images.imagenet import imagenet_categories

    assert imagenet_categories() == list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
