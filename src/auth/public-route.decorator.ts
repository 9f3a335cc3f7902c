import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'tesp:public-route';

/** A route anyone may call, with authentication on (service-info; the staging relay, which checks its own key). */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE, true);
