#include "alpa/sharding/mesh.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

TEST(PlacedMesh, CoordsAndDevices) {
  const PlacedMesh m0 = PlacedMesh::contiguous({2, 4}, 8);
  const PlacedMesh* m = &m0;
  EXPECT_EQ(m->size(), 8);
  EXPECT_EQ(m->to_string(), "2x4@8");
  EXPECT_EQ(m->shape.to_string(), "2x4");
  EXPECT_EQ(m->shape.coords(0), (MeshCoords{0, 0}));
  EXPECT_EQ(m->shape.coords(3), (MeshCoords{0, 3}));
  EXPECT_EQ(m->shape.coords(5), (MeshCoords{1, 1}));
  EXPECT_EQ(m->shape.coords(7), (MeshCoords{1, 3}));
  EXPECT_EQ(m->device(1, 1), 13);
  for (int64_t r = 0; r < m->size(); ++r) {
    MeshCoords ij = m->shape.coords(r);
    EXPECT_EQ(m->device(ij[0], ij[1]), m->devices[r]);
  }
}

TEST(PlacedMesh, PositionsAndText) {
  const PlacedMesh m{{2, 2}, {0, 1, 4, 5}};
  EXPECT_TRUE(m.validate().ok());
  EXPECT_FALSE(m.is_contiguous());
  EXPECT_EQ(m.to_string(), "2x2{0,1,4,5}");
  EXPECT_EQ(m.index_of(4), 2);
  EXPECT_EQ(m.index_of(2), -1);
  EXPECT_TRUE(m.contains(5));
  EXPECT_EQ(m.coords_of(5), (MeshCoords{1, 1}));
  EXPECT_EQ(m.first_device(), 0);
  EXPECT_TRUE(PlacedMesh::contiguous({1, 3}, 2).is_contiguous());
  EXPECT_EQ(PlacedMesh::contiguous({1, 3}, 2).devices, (std::vector<int>{2, 3, 4}));
}

TEST(PlacedMesh, ValidateNamesTheProblem) {
  struct Bad {
    PlacedMesh m;
    const char* says;
  };
  for (const Bad& b : std::vector<Bad>{{{{2, 2}, {0, 1, 2}}, "lists 3 devices; it needs 4"},
                                       {{{1, 2}, {3, 3}}, "device 3 appears twice"},
                                       {{{1, 2}, {0, -1}}, "device -1 is negative"},
                                       {{{0, 2}, {}}, "extents must be >= 1"}}) {
    const Status s = b.m.validate();
    ASSERT_FALSE(s.ok()) << b.says;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s.message();
  }
}

TEST(AxisSet, ListsSizesAndText) {
  EXPECT_EQ(axis_list(kBothAxes), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(axis_list(kAxis1), (std::vector<int64_t>{1}));
  EXPECT_TRUE(axis_list(0).empty());
  EXPECT_EQ(axes_of(std::vector<int64_t>{1, 0}), kBothAxes);
  EXPECT_EQ(axes_size(kBothAxes, {2, 4}), 8);
  EXPECT_EQ(axes_size(kAxis1, {2, 4}), 4);
  EXPECT_EQ(axes_size(0, {2, 4}), 1);
  EXPECT_EQ(axes_to_string(kBothAxes), "01");
}

TEST(MeshShape, Parses) {
  EXPECT_EQ(parse_mesh_shape("2x4").value(), (MeshShape{2, 4}));
  EXPECT_EQ(parse_mesh_shape("8").value(), (MeshShape{1, 8}));
  EXPECT_EQ(parse_mesh_shape("16x1").value(), (MeshShape{16, 1}));
  const MeshShape m{4, 2};
  EXPECT_EQ(parse_mesh_shape(m.to_string()).value(), m);
}

TEST(MeshShape, RejectsBadText) {
  for (std::string_view bad : {"", "2x", "x4", "0x4", "4x0", "axb", "2x4x2", "-2x4", "2 x4", "2X4",
                               "0", "99999999999999999999x1", "65536x65536", "2x4 "}) {
    SCOPED_TRACE(std::string(bad));
    Result<MeshShape> r = parse_mesh_shape(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().hint().find("N0xN1"), std::string::npos) << r.status().hint();
  }
  EXPECT_NE(parse_mesh_shape("axb").status().message().find("\"a\" is not a positive integer"),
            std::string::npos);
  EXPECT_NE(parse_mesh_shape("0x4").status().message().find(">= 1"), std::string::npos);
}

TEST(MeshShape, LogicalShapes) {
  EXPECT_EQ(logical_shapes(8), (std::vector<MeshShape>{{1, 8}, {2, 4}, {4, 2}, {8, 1}}));
  EXPECT_EQ(logical_shapes(1), (std::vector<MeshShape>{{1, 1}}));
  EXPECT_EQ(logical_shapes(16), (std::vector<MeshShape>{{1, 16}, {2, 8}, {4, 4}, {8, 2}, {16, 1}}));
  EXPECT_EQ(logical_shapes(7), (std::vector<MeshShape>{{1, 7}, {7, 1}}));
  EXPECT_EQ(logical_shapes(12).size(), 6u);
  EXPECT_TRUE(logical_shapes(0).empty());
  EXPECT_TRUE(logical_shapes(-4).empty());
}

}  // namespace
}  // namespace alpa
