# A region's network: one VPC, one subnet per zone, NAT egress and a security group.

resource "yandex_vpc_network" "this" {
  name      = "geoingest-${var.name}"
  folder_id = var.folder_id
}

resource "yandex_vpc_gateway" "egress" {
  name      = "geoingest-${var.name}-egress"
  folder_id = var.folder_id
  shared_egress_gateway {}
}

resource "yandex_vpc_route_table" "egress" {
  name       = "geoingest-${var.name}-egress"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id

  static_route {
    destination_prefix = "0.0.0.0/0"
    gateway_id         = yandex_vpc_gateway.egress.id
  }
}

resource "yandex_vpc_subnet" "zone" {
  for_each = { for i, zone in var.zones : zone => i }

  name           = "geoingest-${var.name}-${each.key}"
  folder_id      = var.folder_id
  zone           = each.key
  network_id     = yandex_vpc_network.this.id
  v4_cidr_blocks = [cidrsubnet(var.cidr, 8, each.value)]
  route_table_id = yandex_vpc_route_table.egress.id
}

resource "yandex_vpc_security_group" "region" {
  name       = "geoingest-${var.name}"
  folder_id  = var.folder_id
  network_id = yandex_vpc_network.this.id

  ingress {
    description    = "anything inside the region"
    protocol       = "ANY"
    v4_cidr_blocks = [var.cidr]
  }

  ingress {
    description       = "Yandex load balancer health checks"
    protocol          = "TCP"
    predefined_target = "loadbalancer_healthchecks"
    from_port         = 0
    to_port           = 65535
  }

  dynamic "ingress" {
    for_each = toset(var.public_ports)
    content {
      description    = "public port ${ingress.value}"
      protocol       = "TCP"
      port           = ingress.value
      v4_cidr_blocks = ["0.0.0.0/0"]
    }
  }

  egress {
    description    = "everything out"
    protocol       = "ANY"
    v4_cidr_blocks = ["0.0.0.0/0"]
  }
}
