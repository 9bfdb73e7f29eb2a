import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { ModuleCacheHealth, type ModuleCacheHealthOptions } from '../observability/health';

/**
 * The cache's health as a `@nestjs/terminus` indicator. Add it to the providers of the module
 * that imports ModuleCacheModule, next to TerminusModule (or terminus's HealthIndicatorService):
 *
 *   @Get('health') @HealthCheck()
 *   check() { return this.health.check([() => this.cache.isHealthy('module-cache')]); }
 */
@Injectable()
export class ModuleCacheHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly health: ModuleCacheHealth,
  ) {}

  async isHealthy<const Key extends string = 'module-cache'>(
    key: Key = 'module-cache' as Key,
    options: ModuleCacheHealthOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const session = this.indicators.check(key);
    const report = await this.health.check(options);
    return report.healthy ? session.up(report.details) : session.down({ ...report.details, message: report.problems.join('; ') });
  }
}
