# siftc dump 06: pass 'substitute' (transform)
# replace sparsifiable layers by the policy's member (parallel, factorized, doped, sparse)
# policy: factorized:0.5   target: cpu   pass options: none
# nodes: 71 -> 128 (+57)
# FLOPs: before 2,228,228,096 / after 4,464,187,584
# stats: {"rewritten": 19}

def forward(self, x):
    conv1 = self.conv1(x);  x = None
    bn1 = self.bn1(conv1);  conv1 = None
    relu = self.relu(bn1);  bn1 = None
    maxpool = self.maxpool(relu);  relu = None
    layer1_0_conv1_u = getattr(self.layer1, "0").conv1.U(maxpool)
    layer1_0_conv1_norm = getattr(self.layer1, "0").conv1.norm(layer1_0_conv1_u);  layer1_0_conv1_u = None
    layer1_0_conv1_relu = torch.nn.functional.relu(layer1_0_conv1_norm, inplace = False);  layer1_0_conv1_norm = None
    layer1_0_conv1_v = getattr(self.layer1, "0").conv1.V(layer1_0_conv1_relu);  layer1_0_conv1_relu = None
    layer1_0_bn1 = getattr(self.layer1, "0").bn1(layer1_0_conv1_v);  layer1_0_conv1_v = None
    layer1_0_relu = getattr(self.layer1, "0").relu(layer1_0_bn1);  layer1_0_bn1 = None
    layer1_0_conv2_u = getattr(self.layer1, "0").conv2.U(layer1_0_relu);  layer1_0_relu = None
    layer1_0_conv2_norm = getattr(self.layer1, "0").conv2.norm(layer1_0_conv2_u);  layer1_0_conv2_u = None
    layer1_0_conv2_relu = torch.nn.functional.relu(layer1_0_conv2_norm, inplace = False);  layer1_0_conv2_norm = None
    layer1_0_conv2_v = getattr(self.layer1, "0").conv2.V(layer1_0_conv2_relu);  layer1_0_conv2_relu = None
    layer1_0_bn2 = getattr(self.layer1, "0").bn2(layer1_0_conv2_v);  layer1_0_conv2_v = None
    add = layer1_0_bn2 + maxpool;  layer1_0_bn2 = maxpool = None
    layer1_0_relu_1 = getattr(self.layer1, "0").relu(add);  add = None
    layer1_1_conv1_u = getattr(self.layer1, "1").conv1.U(layer1_0_relu_1)
    layer1_1_conv1_norm = getattr(self.layer1, "1").conv1.norm(layer1_1_conv1_u);  layer1_1_conv1_u = None
    layer1_1_conv1_relu = torch.nn.functional.relu(layer1_1_conv1_norm, inplace = False);  layer1_1_conv1_norm = None
    layer1_1_conv1_v = getattr(self.layer1, "1").conv1.V(layer1_1_conv1_relu);  layer1_1_conv1_relu = None
    layer1_1_bn1 = getattr(self.layer1, "1").bn1(layer1_1_conv1_v);  layer1_1_conv1_v = None
    layer1_1_relu = getattr(self.layer1, "1").relu(layer1_1_bn1);  layer1_1_bn1 = None
    layer1_1_conv2_u = getattr(self.layer1, "1").conv2.U(layer1_1_relu);  layer1_1_relu = None
    layer1_1_conv2_norm = getattr(self.layer1, "1").conv2.norm(layer1_1_conv2_u);  layer1_1_conv2_u = None
    layer1_1_conv2_relu = torch.nn.functional.relu(layer1_1_conv2_norm, inplace = False);  layer1_1_conv2_norm = None
    layer1_1_conv2_v = getattr(self.layer1, "1").conv2.V(layer1_1_conv2_relu);  layer1_1_conv2_relu = None
    layer1_1_bn2 = getattr(self.layer1, "1").bn2(layer1_1_conv2_v);  layer1_1_conv2_v = None
    add_1 = layer1_1_bn2 + layer1_0_relu_1;  layer1_1_bn2 = layer1_0_relu_1 = None
    layer1_1_relu_1 = getattr(self.layer1, "1").relu(add_1);  add_1 = None
    layer2_0_conv1_u = getattr(self.layer2, "0").conv1.U(layer1_1_relu_1)
    layer2_0_conv1_norm = getattr(self.layer2, "0").conv1.norm(layer2_0_conv1_u);  layer2_0_conv1_u = None
    layer2_0_conv1_relu = torch.nn.functional.relu(layer2_0_conv1_norm, inplace = False);  layer2_0_conv1_norm = None
    layer2_0_conv1_v = getattr(self.layer2, "0").conv1.V(layer2_0_conv1_relu);  layer2_0_conv1_relu = None
    layer2_0_bn1 = getattr(self.layer2, "0").bn1(layer2_0_conv1_v);  layer2_0_conv1_v = None
    layer2_0_relu = getattr(self.layer2, "0").relu(layer2_0_bn1);  layer2_0_bn1 = None
    layer2_0_conv2_u = getattr(self.layer2, "0").conv2.U(layer2_0_relu);  layer2_0_relu = None
    layer2_0_conv2_norm = getattr(self.layer2, "0").conv2.norm(layer2_0_conv2_u);  layer2_0_conv2_u = None
    layer2_0_conv2_relu = torch.nn.functional.relu(layer2_0_conv2_norm, inplace = False);  layer2_0_conv2_norm = None
    layer2_0_conv2_v = getattr(self.layer2, "0").conv2.V(layer2_0_conv2_relu);  layer2_0_conv2_relu = None
    layer2_0_bn2 = getattr(self.layer2, "0").bn2(layer2_0_conv2_v);  layer2_0_conv2_v = None
    layer2_0_downsample_0_u = getattr(getattr(self.layer2, "0").downsample, "0").U(layer1_1_relu_1);  layer1_1_relu_1 = None
    layer2_0_downsample_0_norm = getattr(getattr(self.layer2, "0").downsample, "0").norm(layer2_0_downsample_0_u);  layer2_0_downsample_0_u = None
    layer2_0_downsample_0_relu = torch.nn.functional.relu(layer2_0_downsample_0_norm, inplace = False);  layer2_0_downsample_0_norm = None
    layer2_0_downsample_0_v = getattr(getattr(self.layer2, "0").downsample, "0").V(layer2_0_downsample_0_relu);  layer2_0_downsample_0_relu = None
    layer2_0_downsample_1 = getattr(getattr(self.layer2, "0").downsample, "1")(layer2_0_downsample_0_v);  layer2_0_downsample_0_v = None
    add_2 = layer2_0_bn2 + layer2_0_downsample_1;  layer2_0_bn2 = layer2_0_downsample_1 = None
    layer2_0_relu_1 = getattr(self.layer2, "0").relu(add_2);  add_2 = None
    layer2_1_conv1_u = getattr(self.layer2, "1").conv1.U(layer2_0_relu_1)
    layer2_1_conv1_norm = getattr(self.layer2, "1").conv1.norm(layer2_1_conv1_u);  layer2_1_conv1_u = None
    layer2_1_conv1_relu = torch.nn.functional.relu(layer2_1_conv1_norm, inplace = False);  layer2_1_conv1_norm = None
    layer2_1_conv1_v = getattr(self.layer2, "1").conv1.V(layer2_1_conv1_relu);  layer2_1_conv1_relu = None
    layer2_1_bn1 = getattr(self.layer2, "1").bn1(layer2_1_conv1_v);  layer2_1_conv1_v = None
    layer2_1_relu = getattr(self.layer2, "1").relu(layer2_1_bn1);  layer2_1_bn1 = None
    layer2_1_conv2_u = getattr(self.layer2, "1").conv2.U(layer2_1_relu);  layer2_1_relu = None
    layer2_1_conv2_norm = getattr(self.layer2, "1").conv2.norm(layer2_1_conv2_u);  layer2_1_conv2_u = None
    layer2_1_conv2_relu = torch.nn.functional.relu(layer2_1_conv2_norm, inplace = False);  layer2_1_conv2_norm = None
    layer2_1_conv2_v = getattr(self.layer2, "1").conv2.V(layer2_1_conv2_relu);  layer2_1_conv2_relu = None
    layer2_1_bn2 = getattr(self.layer2, "1").bn2(layer2_1_conv2_v);  layer2_1_conv2_v = None
    add_3 = layer2_1_bn2 + layer2_0_relu_1;  layer2_1_bn2 = layer2_0_relu_1 = None
    layer2_1_relu_1 = getattr(self.layer2, "1").relu(add_3);  add_3 = None
    layer3_0_conv1_u = getattr(self.layer3, "0").conv1.U(layer2_1_relu_1)
    layer3_0_conv1_norm = getattr(self.layer3, "0").conv1.norm(layer3_0_conv1_u);  layer3_0_conv1_u = None
    layer3_0_conv1_relu = torch.nn.functional.relu(layer3_0_conv1_norm, inplace = False);  layer3_0_conv1_norm = None
    layer3_0_conv1_v = getattr(self.layer3, "0").conv1.V(layer3_0_conv1_relu);  layer3_0_conv1_relu = None
    layer3_0_bn1 = getattr(self.layer3, "0").bn1(layer3_0_conv1_v);  layer3_0_conv1_v = None
    layer3_0_relu = getattr(self.layer3, "0").relu(layer3_0_bn1);  layer3_0_bn1 = None
    layer3_0_conv2_u = getattr(self.layer3, "0").conv2.U(layer3_0_relu);  layer3_0_relu = None
    layer3_0_conv2_norm = getattr(self.layer3, "0").conv2.norm(layer3_0_conv2_u);  layer3_0_conv2_u = None
    layer3_0_conv2_relu = torch.nn.functional.relu(layer3_0_conv2_norm, inplace = False);  layer3_0_conv2_norm = None
    layer3_0_conv2_v = getattr(self.layer3, "0").conv2.V(layer3_0_conv2_relu);  layer3_0_conv2_relu = None
    layer3_0_bn2 = getattr(self.layer3, "0").bn2(layer3_0_conv2_v);  layer3_0_conv2_v = None
    layer3_0_downsample_0_u = getattr(getattr(self.layer3, "0").downsample, "0").U(layer2_1_relu_1);  layer2_1_relu_1 = None
    layer3_0_downsample_0_norm = getattr(getattr(self.layer3, "0").downsample, "0").norm(layer3_0_downsample_0_u);  layer3_0_downsample_0_u = None
    layer3_0_downsample_0_relu = torch.nn.functional.relu(layer3_0_downsample_0_norm, inplace = False);  layer3_0_downsample_0_norm = None
    layer3_0_downsample_0_v = getattr(getattr(self.layer3, "0").downsample, "0").V(layer3_0_downsample_0_relu);  layer3_0_downsample_0_relu = None
    layer3_0_downsample_1 = getattr(getattr(self.layer3, "0").downsample, "1")(layer3_0_downsample_0_v);  layer3_0_downsample_0_v = None
    add_4 = layer3_0_bn2 + layer3_0_downsample_1;  layer3_0_bn2 = layer3_0_downsample_1 = None
    layer3_0_relu_1 = getattr(self.layer3, "0").relu(add_4);  add_4 = None
    layer3_1_conv1_u = getattr(self.layer3, "1").conv1.U(layer3_0_relu_1)
    layer3_1_conv1_norm = getattr(self.layer3, "1").conv1.norm(layer3_1_conv1_u);  layer3_1_conv1_u = None
    layer3_1_conv1_relu = torch.nn.functional.relu(layer3_1_conv1_norm, inplace = False);  layer3_1_conv1_norm = None
    layer3_1_conv1_v = getattr(self.layer3, "1").conv1.V(layer3_1_conv1_relu);  layer3_1_conv1_relu = None
    layer3_1_bn1 = getattr(self.layer3, "1").bn1(layer3_1_conv1_v);  layer3_1_conv1_v = None
    layer3_1_relu = getattr(self.layer3, "1").relu(layer3_1_bn1);  layer3_1_bn1 = None
    layer3_1_conv2_u = getattr(self.layer3, "1").conv2.U(layer3_1_relu);  layer3_1_relu = None
    layer3_1_conv2_norm = getattr(self.layer3, "1").conv2.norm(layer3_1_conv2_u);  layer3_1_conv2_u = None
    layer3_1_conv2_relu = torch.nn.functional.relu(layer3_1_conv2_norm, inplace = False);  layer3_1_conv2_norm = None
    layer3_1_conv2_v = getattr(self.layer3, "1").conv2.V(layer3_1_conv2_relu);  layer3_1_conv2_relu = None
    layer3_1_bn2 = getattr(self.layer3, "1").bn2(layer3_1_conv2_v);  layer3_1_conv2_v = None
    add_5 = layer3_1_bn2 + layer3_0_relu_1;  layer3_1_bn2 = layer3_0_relu_1 = None
    layer3_1_relu_1 = getattr(self.layer3, "1").relu(add_5);  add_5 = None
    layer4_0_conv1_u = getattr(self.layer4, "0").conv1.U(layer3_1_relu_1)
    layer4_0_conv1_norm = getattr(self.layer4, "0").conv1.norm(layer4_0_conv1_u);  layer4_0_conv1_u = None
    layer4_0_conv1_relu = torch.nn.functional.relu(layer4_0_conv1_norm, inplace = False);  layer4_0_conv1_norm = None
    layer4_0_conv1_v = getattr(self.layer4, "0").conv1.V(layer4_0_conv1_relu);  layer4_0_conv1_relu = None
    layer4_0_bn1 = getattr(self.layer4, "0").bn1(layer4_0_conv1_v);  layer4_0_conv1_v = None
    layer4_0_relu = getattr(self.layer4, "0").relu(layer4_0_bn1);  layer4_0_bn1 = None
    layer4_0_conv2_u = getattr(self.layer4, "0").conv2.U(layer4_0_relu);  layer4_0_relu = None
    layer4_0_conv2_norm = getattr(self.layer4, "0").conv2.norm(layer4_0_conv2_u);  layer4_0_conv2_u = None
    layer4_0_conv2_relu = torch.nn.functional.relu(layer4_0_conv2_norm, inplace = False);  layer4_0_conv2_norm = None
    layer4_0_conv2_v = getattr(self.layer4, "0").conv2.V(layer4_0_conv2_relu);  layer4_0_conv2_relu = None
    layer4_0_bn2 = getattr(self.layer4, "0").bn2(layer4_0_conv2_v);  layer4_0_conv2_v = None
    layer4_0_downsample_0_u = getattr(getattr(self.layer4, "0").downsample, "0").U(layer3_1_relu_1);  layer3_1_relu_1 = None
    layer4_0_downsample_0_norm = getattr(getattr(self.layer4, "0").downsample, "0").norm(layer4_0_downsample_0_u);  layer4_0_downsample_0_u = None
    layer4_0_downsample_0_relu = torch.nn.functional.relu(layer4_0_downsample_0_norm, inplace = False);  layer4_0_downsample_0_norm = None
    layer4_0_downsample_0_v = getattr(getattr(self.layer4, "0").downsample, "0").V(layer4_0_downsample_0_relu);  layer4_0_downsample_0_relu = None
    layer4_0_downsample_1 = getattr(getattr(self.layer4, "0").downsample, "1")(layer4_0_downsample_0_v);  layer4_0_downsample_0_v = None
    add_6 = layer4_0_bn2 + layer4_0_downsample_1;  layer4_0_bn2 = layer4_0_downsample_1 = None
    layer4_0_relu_1 = getattr(self.layer4, "0").relu(add_6);  add_6 = None
    layer4_1_conv1_u = getattr(self.layer4, "1").conv1.U(layer4_0_relu_1)
    layer4_1_conv1_norm = getattr(self.layer4, "1").conv1.norm(layer4_1_conv1_u);  layer4_1_conv1_u = None
    layer4_1_conv1_relu = torch.nn.functional.relu(layer4_1_conv1_norm, inplace = False);  layer4_1_conv1_norm = None
    layer4_1_conv1_v = getattr(self.layer4, "1").conv1.V(layer4_1_conv1_relu);  layer4_1_conv1_relu = None
    layer4_1_bn1 = getattr(self.layer4, "1").bn1(layer4_1_conv1_v);  layer4_1_conv1_v = None
    layer4_1_relu = getattr(self.layer4, "1").relu(layer4_1_bn1);  layer4_1_bn1 = None
    layer4_1_conv2_u = getattr(self.layer4, "1").conv2.U(layer4_1_relu);  layer4_1_relu = None
    layer4_1_conv2_norm = getattr(self.layer4, "1").conv2.norm(layer4_1_conv2_u);  layer4_1_conv2_u = None
    layer4_1_conv2_relu = torch.nn.functional.relu(layer4_1_conv2_norm, inplace = False);  layer4_1_conv2_norm = None
    layer4_1_conv2_v = getattr(self.layer4, "1").conv2.V(layer4_1_conv2_relu);  layer4_1_conv2_relu = None
    layer4_1_bn2 = getattr(self.layer4, "1").bn2(layer4_1_conv2_v);  layer4_1_conv2_v = None
    add_7 = layer4_1_bn2 + layer4_0_relu_1;  layer4_1_bn2 = layer4_0_relu_1 = None
    layer4_1_relu_1 = getattr(self.layer4, "1").relu(add_7);  add_7 = None
    avgpool = self.avgpool(layer4_1_relu_1);  layer4_1_relu_1 = None
    flatten = torch.flatten(avgpool, 1);  avgpool = None
    fc = self.fc(flatten);  flatten = None
    return fc

# ---- nodes (meta written so far) ----
# node | op | target | shape | role | category | FLOPs
# x | placeholder | x | (2, 3, 32, 32) | - | none | 0
# conv1 | call_module | conv1 | (2, 64, 32, 32) | stem | conv | 7,077,888
# bn1 | call_module | bn1 | (2, 64, 32, 32) | norm | norm | 524,288
# relu | call_module | relu | (2, 64, 32, 32) | - | act | 131,072
# maxpool | call_module | maxpool | (2, 64, 32, 32) | - | none | 0
# layer1_0_conv1_u | call_module | layer1.0.conv1.U | (2, 116, 32, 32) | - | conv | 273,678,336
# layer1_0_conv1_norm | call_module | layer1.0.conv1.norm | (2, 116, 32, 32) | - | norm | 950,272
# layer1_0_conv1_relu | call_function | relu | (2, 116, 32, 32) | - | act | 237,568
# layer1_0_conv1_v | call_module | layer1.0.conv1.V | (2, 64, 32, 32) | - | conv | 30,408,704
# layer1_0_bn1 | call_module | layer1.0.bn1 | (2, 64, 32, 32) | norm | norm | 524,288
# layer1_0_relu | call_module | layer1.0.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_0_conv2_u | call_module | layer1.0.conv2.U | (2, 116, 32, 32) | - | conv | 273,678,336
# layer1_0_conv2_norm | call_module | layer1.0.conv2.norm | (2, 116, 32, 32) | - | norm | 950,272
# layer1_0_conv2_relu | call_function | relu | (2, 116, 32, 32) | - | act | 237,568
# layer1_0_conv2_v | call_module | layer1.0.conv2.V | (2, 64, 32, 32) | - | conv | 30,408,704
# layer1_0_bn2 | call_module | layer1.0.bn2 | (2, 64, 32, 32) | norm | norm | 524,288
# add | call_function | add | (2, 64, 32, 32) | - | elementwise | 131,072
# layer1_0_relu_1 | call_module | layer1.0.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_1_conv1_u | call_module | layer1.1.conv1.U | (2, 116, 32, 32) | - | conv | 273,678,336
# layer1_1_conv1_norm | call_module | layer1.1.conv1.norm | (2, 116, 32, 32) | - | norm | 950,272
# layer1_1_conv1_relu | call_function | relu | (2, 116, 32, 32) | - | act | 237,568
# layer1_1_conv1_v | call_module | layer1.1.conv1.V | (2, 64, 32, 32) | - | conv | 30,408,704
# layer1_1_bn1 | call_module | layer1.1.bn1 | (2, 64, 32, 32) | norm | norm | 524,288
# layer1_1_relu | call_module | layer1.1.relu | (2, 64, 32, 32) | - | act | 131,072
# layer1_1_conv2_u | call_module | layer1.1.conv2.U | (2, 116, 32, 32) | - | conv | 273,678,336
# layer1_1_conv2_norm | call_module | layer1.1.conv2.norm | (2, 116, 32, 32) | - | norm | 950,272
# layer1_1_conv2_relu | call_function | relu | (2, 116, 32, 32) | - | act | 237,568
# layer1_1_conv2_v | call_module | layer1.1.conv2.V | (2, 64, 32, 32) | - | conv | 30,408,704
# layer1_1_bn2 | call_module | layer1.1.bn2 | (2, 64, 32, 32) | norm | norm | 524,288
# add_1 | call_function | add | (2, 64, 32, 32) | - | elementwise | 131,072
# layer1_1_relu_1 | call_module | layer1.1.relu | (2, 64, 32, 32) | - | act | 131,072
# layer2_0_conv1_u | call_module | layer2.0.conv1.U | (2, 210, 16, 16) | - | conv | 123,863,040
# layer2_0_conv1_norm | call_module | layer2.0.conv1.norm | (2, 210, 16, 16) | - | norm | 430,080
# layer2_0_conv1_relu | call_function | relu | (2, 210, 16, 16) | - | act | 107,520
# layer2_0_conv1_v | call_module | layer2.0.conv1.V | (2, 128, 16, 16) | - | conv | 27,525,120
# layer2_0_bn1 | call_module | layer2.0.bn1 | (2, 128, 16, 16) | norm | norm | 262,144
# layer2_0_relu | call_module | layer2.0.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_0_conv2_u | call_module | layer2.0.conv2.U | (2, 231, 16, 16) | - | conv | 272,498,688
# layer2_0_conv2_norm | call_module | layer2.0.conv2.norm | (2, 231, 16, 16) | - | norm | 473,088
# layer2_0_conv2_relu | call_function | relu | (2, 231, 16, 16) | - | act | 118,272
# layer2_0_conv2_v | call_module | layer2.0.conv2.V | (2, 128, 16, 16) | - | conv | 30,277,632
# layer2_0_bn2 | call_module | layer2.0.bn2 | (2, 128, 16, 16) | norm | norm | 262,144
# layer2_0_downsample_0_u | call_module | layer2.0.downsample.0.U | (2, 86, 16, 16) | - | conv | 5,636,096
# layer2_0_downsample_0_norm | call_module | layer2.0.downsample.0.norm | (2, 86, 16, 16) | - | norm | 176,128
# layer2_0_downsample_0_relu | call_function | relu | (2, 86, 16, 16) | - | act | 44,032
# layer2_0_downsample_0_v | call_module | layer2.0.downsample.0.V | (2, 128, 16, 16) | - | conv | 11,272,192
# layer2_0_downsample_1 | call_module | layer2.0.downsample.1 | (2, 128, 16, 16) | norm | norm | 262,144
# add_2 | call_function | add | (2, 128, 16, 16) | - | elementwise | 65,536
# layer2_0_relu_1 | call_module | layer2.0.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_1_conv1_u | call_module | layer2.1.conv1.U | (2, 231, 16, 16) | - | conv | 272,498,688
# layer2_1_conv1_norm | call_module | layer2.1.conv1.norm | (2, 231, 16, 16) | - | norm | 473,088
# layer2_1_conv1_relu | call_function | relu | (2, 231, 16, 16) | - | act | 118,272
# layer2_1_conv1_v | call_module | layer2.1.conv1.V | (2, 128, 16, 16) | - | conv | 30,277,632
# layer2_1_bn1 | call_module | layer2.1.bn1 | (2, 128, 16, 16) | norm | norm | 262,144
# layer2_1_relu | call_module | layer2.1.relu | (2, 128, 16, 16) | - | act | 65,536
# layer2_1_conv2_u | call_module | layer2.1.conv2.U | (2, 231, 16, 16) | - | conv | 272,498,688
# layer2_1_conv2_norm | call_module | layer2.1.conv2.norm | (2, 231, 16, 16) | - | norm | 473,088
# layer2_1_conv2_relu | call_function | relu | (2, 231, 16, 16) | - | act | 118,272
# layer2_1_conv2_v | call_module | layer2.1.conv2.V | (2, 128, 16, 16) | - | conv | 30,277,632
# layer2_1_bn2 | call_module | layer2.1.bn2 | (2, 128, 16, 16) | norm | norm | 262,144
# add_3 | call_function | add | (2, 128, 16, 16) | - | elementwise | 65,536
# layer2_1_relu_1 | call_module | layer2.1.relu | (2, 128, 16, 16) | - | act | 65,536
# layer3_0_conv1_u | call_module | layer3.0.conv1.U | (2, 419, 8, 8) | - | conv | 123,568,128
# layer3_0_conv1_norm | call_module | layer3.0.conv1.norm | (2, 419, 8, 8) | - | norm | 214,528
# layer3_0_conv1_relu | call_function | relu | (2, 419, 8, 8) | - | act | 53,632
# layer3_0_conv1_v | call_module | layer3.0.conv1.V | (2, 256, 8, 8) | - | conv | 27,459,584
# layer3_0_bn1 | call_module | layer3.0.bn1 | (2, 256, 8, 8) | norm | norm | 131,072
# layer3_0_relu | call_module | layer3.0.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_0_conv2_u | call_module | layer3.0.conv2.U | (2, 461, 8, 8) | - | conv | 271,908,864
# layer3_0_conv2_norm | call_module | layer3.0.conv2.norm | (2, 461, 8, 8) | - | norm | 236,032
# layer3_0_conv2_relu | call_function | relu | (2, 461, 8, 8) | - | act | 59,008
# layer3_0_conv2_v | call_module | layer3.0.conv2.V | (2, 256, 8, 8) | - | conv | 30,212,096
# layer3_0_bn2 | call_module | layer3.0.bn2 | (2, 256, 8, 8) | norm | norm | 131,072
# layer3_0_downsample_0_u | call_module | layer3.0.downsample.0.U | (2, 171, 8, 8) | - | conv | 5,603,328
# layer3_0_downsample_0_norm | call_module | layer3.0.downsample.0.norm | (2, 171, 8, 8) | - | norm | 87,552
# layer3_0_downsample_0_relu | call_function | relu | (2, 171, 8, 8) | - | act | 21,888
# layer3_0_downsample_0_v | call_module | layer3.0.downsample.0.V | (2, 256, 8, 8) | - | conv | 11,206,656
# layer3_0_downsample_1 | call_module | layer3.0.downsample.1 | (2, 256, 8, 8) | norm | norm | 131,072
# add_4 | call_function | add | (2, 256, 8, 8) | - | elementwise | 32,768
# layer3_0_relu_1 | call_module | layer3.0.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_1_conv1_u | call_module | layer3.1.conv1.U | (2, 461, 8, 8) | - | conv | 271,908,864
# layer3_1_conv1_norm | call_module | layer3.1.conv1.norm | (2, 461, 8, 8) | - | norm | 236,032
# layer3_1_conv1_relu | call_function | relu | (2, 461, 8, 8) | - | act | 59,008
# layer3_1_conv1_v | call_module | layer3.1.conv1.V | (2, 256, 8, 8) | - | conv | 30,212,096
# layer3_1_bn1 | call_module | layer3.1.bn1 | (2, 256, 8, 8) | norm | norm | 131,072
# layer3_1_relu | call_module | layer3.1.relu | (2, 256, 8, 8) | - | act | 32,768
# layer3_1_conv2_u | call_module | layer3.1.conv2.U | (2, 461, 8, 8) | - | conv | 271,908,864
# layer3_1_conv2_norm | call_module | layer3.1.conv2.norm | (2, 461, 8, 8) | - | norm | 236,032
# layer3_1_conv2_relu | call_function | relu | (2, 461, 8, 8) | - | act | 59,008
# layer3_1_conv2_v | call_module | layer3.1.conv2.V | (2, 256, 8, 8) | - | conv | 30,212,096
# layer3_1_bn2 | call_module | layer3.1.bn2 | (2, 256, 8, 8) | norm | norm | 131,072
# add_5 | call_function | add | (2, 256, 8, 8) | - | elementwise | 32,768
# layer3_1_relu_1 | call_module | layer3.1.relu | (2, 256, 8, 8) | - | act | 32,768
# layer4_0_conv1_u | call_module | layer4.0.conv1.U | (2, 838, 4, 4) | - | conv | 123,568,128
# layer4_0_conv1_norm | call_module | layer4.0.conv1.norm | (2, 838, 4, 4) | - | norm | 107,264
# layer4_0_conv1_relu | call_function | relu | (2, 838, 4, 4) | - | act | 26,816
# layer4_0_conv1_v | call_module | layer4.0.conv1.V | (2, 512, 4, 4) | - | conv | 27,459,584
# layer4_0_bn1 | call_module | layer4.0.bn1 | (2, 512, 4, 4) | norm | norm | 65,536
# layer4_0_relu | call_module | layer4.0.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_0_conv2_u | call_module | layer4.0.conv2.U | (2, 922, 4, 4) | - | conv | 271,908,864
# layer4_0_conv2_norm | call_module | layer4.0.conv2.norm | (2, 922, 4, 4) | - | norm | 118,016
# layer4_0_conv2_relu | call_function | relu | (2, 922, 4, 4) | - | act | 29,504
# layer4_0_conv2_v | call_module | layer4.0.conv2.V | (2, 512, 4, 4) | - | conv | 30,212,096
# layer4_0_bn2 | call_module | layer4.0.bn2 | (2, 512, 4, 4) | norm | norm | 65,536
# layer4_0_downsample_0_u | call_module | layer4.0.downsample.0.U | (2, 342, 4, 4) | - | conv | 5,603,328
# layer4_0_downsample_0_norm | call_module | layer4.0.downsample.0.norm | (2, 342, 4, 4) | - | norm | 43,776
# layer4_0_downsample_0_relu | call_function | relu | (2, 342, 4, 4) | - | act | 10,944
# layer4_0_downsample_0_v | call_module | layer4.0.downsample.0.V | (2, 512, 4, 4) | - | conv | 11,206,656
# layer4_0_downsample_1 | call_module | layer4.0.downsample.1 | (2, 512, 4, 4) | norm | norm | 65,536
# add_6 | call_function | add | (2, 512, 4, 4) | - | elementwise | 16,384
# layer4_0_relu_1 | call_module | layer4.0.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_1_conv1_u | call_module | layer4.1.conv1.U | (2, 922, 4, 4) | - | conv | 271,908,864
# layer4_1_conv1_norm | call_module | layer4.1.conv1.norm | (2, 922, 4, 4) | - | norm | 118,016
# layer4_1_conv1_relu | call_function | relu | (2, 922, 4, 4) | - | act | 29,504
# layer4_1_conv1_v | call_module | layer4.1.conv1.V | (2, 512, 4, 4) | - | conv | 30,212,096
# layer4_1_bn1 | call_module | layer4.1.bn1 | (2, 512, 4, 4) | norm | norm | 65,536
# layer4_1_relu | call_module | layer4.1.relu | (2, 512, 4, 4) | - | act | 16,384
# layer4_1_conv2_u | call_module | layer4.1.conv2.U | (2, 922, 4, 4) | - | conv | 271,908,864
# layer4_1_conv2_norm | call_module | layer4.1.conv2.norm | (2, 922, 4, 4) | - | norm | 118,016
# layer4_1_conv2_relu | call_function | relu | (2, 922, 4, 4) | - | act | 29,504
# layer4_1_conv2_v | call_module | layer4.1.conv2.V | (2, 512, 4, 4) | - | conv | 30,212,096
# layer4_1_bn2 | call_module | layer4.1.bn2 | (2, 512, 4, 4) | norm | norm | 65,536
# add_7 | call_function | add | (2, 512, 4, 4) | - | elementwise | 16,384
# layer4_1_relu_1 | call_module | layer4.1.relu | (2, 512, 4, 4) | - | act | 16,384
# avgpool | call_module | avgpool | (2, 512, 1, 1) | - | pool | 16,384
# flatten | call_function | flatten | (2, 512) | - | none | 0
# fc | call_module | fc | (2, 10) | head | linear | 20,480
# output | output | output | (2, 10) | - | none | 0

# ---- weight modules called by the graph ----
# module | type | weight | non-zeros
# conv1 | Conv2d | (64, 3, 3, 3) | dense
# bn1 | BatchNorm2d | (64,) | dense
# layer1.0.conv1.U | Conv2d | (116, 64, 3, 3) | 66,816/66,816
# layer1.0.conv1.norm | BatchNorm2d | (116,) | dense
# layer1.0.conv1.V | Conv2d | (64, 116, 1, 1) | 7,424/7,424
# layer1.0.bn1 | BatchNorm2d | (64,) | dense
# layer1.0.conv2.U | Conv2d | (116, 64, 3, 3) | 66,816/66,816
# layer1.0.conv2.norm | BatchNorm2d | (116,) | dense
# layer1.0.conv2.V | Conv2d | (64, 116, 1, 1) | 7,424/7,424
# layer1.0.bn2 | BatchNorm2d | (64,) | dense
# layer1.1.conv1.U | Conv2d | (116, 64, 3, 3) | 66,816/66,816
# layer1.1.conv1.norm | BatchNorm2d | (116,) | dense
# layer1.1.conv1.V | Conv2d | (64, 116, 1, 1) | 7,424/7,424
# layer1.1.bn1 | BatchNorm2d | (64,) | dense
# layer1.1.conv2.U | Conv2d | (116, 64, 3, 3) | 66,816/66,816
# layer1.1.conv2.norm | BatchNorm2d | (116,) | dense
# layer1.1.conv2.V | Conv2d | (64, 116, 1, 1) | 7,424/7,424
# layer1.1.bn2 | BatchNorm2d | (64,) | dense
# layer2.0.conv1.U | Conv2d | (210, 64, 3, 3) | 120,960/120,960
# layer2.0.conv1.norm | BatchNorm2d | (210,) | dense
# layer2.0.conv1.V | Conv2d | (128, 210, 1, 1) | 26,880/26,880
# layer2.0.bn1 | BatchNorm2d | (128,) | dense
# layer2.0.conv2.U | Conv2d | (231, 128, 3, 3) | 266,112/266,112
# layer2.0.conv2.norm | BatchNorm2d | (231,) | dense
# layer2.0.conv2.V | Conv2d | (128, 231, 1, 1) | 29,568/29,568
# layer2.0.bn2 | BatchNorm2d | (128,) | dense
# layer2.0.downsample.0.U | Conv2d | (86, 64, 1, 1) | 5,504/5,504
# layer2.0.downsample.0.norm | BatchNorm2d | (86,) | dense
# layer2.0.downsample.0.V | Conv2d | (128, 86, 1, 1) | 11,008/11,008
# layer2.0.downsample.1 | BatchNorm2d | (128,) | dense
# layer2.1.conv1.U | Conv2d | (231, 128, 3, 3) | 266,112/266,112
# layer2.1.conv1.norm | BatchNorm2d | (231,) | dense
# layer2.1.conv1.V | Conv2d | (128, 231, 1, 1) | 29,568/29,568
# layer2.1.bn1 | BatchNorm2d | (128,) | dense
# layer2.1.conv2.U | Conv2d | (231, 128, 3, 3) | 266,112/266,112
# layer2.1.conv2.norm | BatchNorm2d | (231,) | dense
# layer2.1.conv2.V | Conv2d | (128, 231, 1, 1) | 29,568/29,568
# layer2.1.bn2 | BatchNorm2d | (128,) | dense
# layer3.0.conv1.U | Conv2d | (419, 128, 3, 3) | 482,688/482,688
# layer3.0.conv1.norm | BatchNorm2d | (419,) | dense
# layer3.0.conv1.V | Conv2d | (256, 419, 1, 1) | 107,264/107,264
# layer3.0.bn1 | BatchNorm2d | (256,) | dense
# layer3.0.conv2.U | Conv2d | (461, 256, 3, 3) | 1,062,144/1,062,144
# layer3.0.conv2.norm | BatchNorm2d | (461,) | dense
# layer3.0.conv2.V | Conv2d | (256, 461, 1, 1) | 118,016/118,016
# layer3.0.bn2 | BatchNorm2d | (256,) | dense
# layer3.0.downsample.0.U | Conv2d | (171, 128, 1, 1) | 21,888/21,888
# layer3.0.downsample.0.norm | BatchNorm2d | (171,) | dense
# layer3.0.downsample.0.V | Conv2d | (256, 171, 1, 1) | 43,776/43,776
# layer3.0.downsample.1 | BatchNorm2d | (256,) | dense
# layer3.1.conv1.U | Conv2d | (461, 256, 3, 3) | 1,062,144/1,062,144
# layer3.1.conv1.norm | BatchNorm2d | (461,) | dense
# layer3.1.conv1.V | Conv2d | (256, 461, 1, 1) | 118,016/118,016
# layer3.1.bn1 | BatchNorm2d | (256,) | dense
# layer3.1.conv2.U | Conv2d | (461, 256, 3, 3) | 1,062,144/1,062,144
# layer3.1.conv2.norm | BatchNorm2d | (461,) | dense
# layer3.1.conv2.V | Conv2d | (256, 461, 1, 1) | 118,016/118,016
# layer3.1.bn2 | BatchNorm2d | (256,) | dense
# layer4.0.conv1.U | Conv2d | (838, 256, 3, 3) | 1,930,752/1,930,752
# layer4.0.conv1.norm | BatchNorm2d | (838,) | dense
# layer4.0.conv1.V | Conv2d | (512, 838, 1, 1) | 429,056/429,056
# layer4.0.bn1 | BatchNorm2d | (512,) | dense
# layer4.0.conv2.U | Conv2d | (922, 512, 3, 3) | 4,248,576/4,248,576
# layer4.0.conv2.norm | BatchNorm2d | (922,) | dense
# layer4.0.conv2.V | Conv2d | (512, 922, 1, 1) | 472,064/472,064
# layer4.0.bn2 | BatchNorm2d | (512,) | dense
# layer4.0.downsample.0.U | Conv2d | (342, 256, 1, 1) | 87,552/87,552
# layer4.0.downsample.0.norm | BatchNorm2d | (342,) | dense
# layer4.0.downsample.0.V | Conv2d | (512, 342, 1, 1) | 175,104/175,104
# layer4.0.downsample.1 | BatchNorm2d | (512,) | dense
# layer4.1.conv1.U | Conv2d | (922, 512, 3, 3) | 4,248,576/4,248,576
# layer4.1.conv1.norm | BatchNorm2d | (922,) | dense
# layer4.1.conv1.V | Conv2d | (512, 922, 1, 1) | 472,064/472,064
# layer4.1.bn1 | BatchNorm2d | (512,) | dense
# layer4.1.conv2.U | Conv2d | (922, 512, 3, 3) | 4,248,576/4,248,576
# layer4.1.conv2.norm | BatchNorm2d | (922,) | dense
# layer4.1.conv2.V | Conv2d | (512, 922, 1, 1) | 472,064/472,064
# layer4.1.bn2 | BatchNorm2d | (512,) | dense
# fc | Linear | (10, 512) | dense
