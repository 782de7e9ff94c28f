"""Scene description: meshes, cameras, lights, materials and file IO (no rendering here)."""
from lumigrad.scene.camera import Camera, Rays
from lumigrad.scene.io import CameraSet, read_image, read_mesh, read_transforms_json, write_image, write_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight, Light, PointLight, SHEnvironmentLight, project_sh
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, Material, TextureParam
from lumigrad.scene.mesh import Mesh, PackedMeshes, pack_meshes, unpack_verts
from lumigrad.scene.rigs import orbit_cameras, turntable_cameras
from lumigrad.scene.scene import ObjectTransform, Scene, SceneObject

__all__ = [
    "Camera", "Rays", "Mesh", "PackedMeshes", "pack_meshes", "unpack_verts",
    "AmbientLight", "DirectionalLight", "PointLight", "SHEnvironmentLight", "Light", "project_sh",
    "TextureParam", "LambertMaterial", "BlinnPhongMaterial", "GGXMaterial", "Material",
    "read_mesh", "write_mesh", "read_image", "write_image", "read_transforms_json", "CameraSet",
    "orbit_cameras", "turntable_cameras", "ObjectTransform", "Scene", "SceneObject",
]
